//! Demo service `catalog` (default port 7002): the shows and films of the streaming-site demo.
//!
//! Routes: `GET /titles` (JSON list of `{id, title, kind, year, genre}`), `GET /titles/<id>`,
//! `GET /health` (`ok`). Port from `--port N`, env `PORT`, or a socket passed by fleet.

mod common;

use common::{Json, Request, Response};

const NAME: &str = "catalog";
const DEFAULT_PORT: u16 = 7002;

struct Title {
    id: u32,
    title: &'static str,
    kind: &'static str,
    year: u32,
    genre: &'static str,
}

const TITLES: [Title; 5] = [
    Title {
        id: 1,
        title: "The Long Orbit",
        kind: "series",
        year: 2021,
        genre: "sci-fi",
    },
    Title {
        id: 2,
        title: "Harbour Lights",
        kind: "film",
        year: 2019,
        genre: "drama",
    },
    Title {
        id: 3,
        title: "Kitchen Nightshift",
        kind: "series",
        year: 2023,
        genre: "comedy",
    },
    Title {
        id: 4,
        title: "Cold Case Bay",
        kind: "series",
        year: 2018,
        genre: "crime",
    },
    Title {
        id: 5,
        title: "Paper Lanterns",
        kind: "film",
        year: 2022,
        genre: "animation",
    },
];

fn main() {
    let listener = common::start_demo_service(NAME, DEFAULT_PORT);
    common::serve(listener, String::new(), |request| route(request).into())
}

fn route(request: &Request) -> Response {
    match request.path() {
        "/health" => Response::text(200, "ok"),
        "/titles" => Response::json(200, &Json::Arr(TITLES.iter().map(title_json).collect())),
        path => match path.strip_prefix("/titles/") {
            Some(id) => match id.parse::<u32>() {
                Ok(id) => match TITLES.iter().find(|title| title.id == id) {
                    Some(title) => Response::json(200, &title_json(title)),
                    None => Response::json_error(404, &format!("no title with id {id}")),
                },
                Err(_) => Response::json_error(400, &format!("title id {id:?} is not a number")),
            },
            None => Response::not_found(path),
        },
    }
}

fn title_json(title: &Title) -> Json {
    Json::obj([
        ("id", Json::from(title.id)),
        ("title", Json::from(title.title)),
        ("kind", Json::from(title.kind)),
        ("year", Json::from(title.year)),
        ("genre", Json::from(title.genre)),
    ])
}
