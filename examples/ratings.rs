//! Demo service `ratings` (default port 7003): average stars per title for the streaming-site
//! demo.
//!
//! Routes: `GET /ratings` (`{"version": VERSION, "ratings": {"<title id>": <average>, ...}}`),
//! `GET /version` (VERSION), `GET /health` (`ok`). Edit [`VERSION`] and save to watch fleet
//! redeploy this service alone. Port from `--port N`, env `PORT`, or a socket passed by fleet.

mod common;

use common::{Json, Request, Response};

const NAME: &str = "ratings";
const DEFAULT_PORT: u16 = 7003;
/// Shown in every ratings document, so a redeploy is visible from `curl`.
const VERSION: &str = "ratings v1";

/// Individual reviews as `(title id, stars)`. Title 5 has none yet, so the gateway shows it
/// unrated.
const REVIEWS: [(u32, u32); 11] = [
    (1, 5),
    (1, 4),
    (1, 5),
    (2, 3),
    (2, 4),
    (3, 4),
    (3, 5),
    (3, 3),
    (3, 4),
    (4, 2),
    (4, 4),
];

fn main() {
    let listener = common::start_demo_service(NAME, DEFAULT_PORT);
    common::serve(listener, String::new(), |request| route(request).into())
}

fn route(request: &Request) -> Response {
    match request.path() {
        "/health" => Response::text(200, "ok"),
        "/version" => Response::text(200, VERSION),
        "/ratings" => Response::json(
            200,
            &Json::obj([
                ("version", Json::from(VERSION)),
                ("ratings", average_stars()),
            ]),
        ),
        path => Response::not_found(path),
    }
}

/// `{"<title id>": average rounded to one decimal}`, in title id order.
fn average_stars() -> Json {
    let mut title_ids: Vec<u32> = REVIEWS.iter().map(|(title_id, _)| *title_id).collect();
    title_ids.sort_unstable();
    title_ids.dedup();
    Json::obj(title_ids.into_iter().map(|title_id| {
        let stars: Vec<f64> = REVIEWS
            .iter()
            .filter(|(id, _)| *id == title_id)
            .map(|(_, stars)| f64::from(*stars))
            .collect();
        let average = stars.iter().sum::<f64>() / stars.len() as f64;
        (
            title_id.to_string(),
            Json::from((average * 10.0).round() / 10.0),
        )
    }))
}
