//! Demo service `gateway` (default port 7000): the front door of the streaming-site demo.
//!
//! `GET /` calls `users`, `catalog` and `ratings` over HTTP, in parallel, and answers a "home
//! page": the user list and every title with its average stars. If any upstream fails (no
//! connection, timeout, non-2xx, bad JSON) it answers 502 with a JSON body naming each one that
//! failed. `GET /health` is `ok` whenever the gateway itself is up: readiness of the upstreams
//! is fleet's business (`depends_on`), not this probe's.
//!
//! Upstreams come from env `USERS_URL`, `CATALOG_URL`, `RATINGS_URL` (defaults
//! `http://127.0.0.1:7001`, `:7002`, `:7003`). Port from `--port N`, env `PORT`, or a socket
//! passed by fleet.

mod common;

use std::thread;

use common::{Json, Request, Response};

const NAME: &str = "gateway";
const DEFAULT_PORT: u16 = 7000;

/// One service the home page depends on.
struct Upstream {
    name: &'static str,
    url_env: &'static str,
    default_url: &'static str,
    path: &'static str,
}

const USERS: Upstream = Upstream {
    name: "users",
    url_env: "USERS_URL",
    default_url: "http://127.0.0.1:7001",
    path: "/users",
};
const CATALOG: Upstream = Upstream {
    name: "catalog",
    url_env: "CATALOG_URL",
    default_url: "http://127.0.0.1:7002",
    path: "/titles",
};
const RATINGS: Upstream = Upstream {
    name: "ratings",
    url_env: "RATINGS_URL",
    default_url: "http://127.0.0.1:7003",
    path: "/ratings",
};

/// An upstream call that went wrong, as reported in the 502 body.
struct Failure {
    upstream: &'static str,
    url: String,
    reason: String,
}

impl Upstream {
    fn url(&self) -> String {
        let base = std::env::var(self.url_env).unwrap_or_else(|_| self.default_url.to_string());
        format!("{}{}", base.trim_end_matches('/'), self.path)
    }

    /// GETs this upstream's document and parses it as JSON.
    fn fetch(&self) -> Result<Json, Failure> {
        let url = self.url();
        let failure = |reason: String| Failure {
            upstream: self.name,
            url: url.clone(),
            reason,
        };
        let response = common::http_get(&url).map_err(failure)?;
        if !(200..300).contains(&response.status) {
            return Err(failure(format!("answered HTTP {}", response.status)));
        }
        Json::parse(&response.body).map_err(failure)
    }
}

fn main() {
    let listener = common::start_demo_service(NAME, DEFAULT_PORT);
    common::serve(listener, String::new(), |request| route(request).into())
}

fn route(request: &Request) -> Response {
    match request.path() {
        "/health" => Response::text(200, "ok"),
        "/" => home_page(),
        path => Response::not_found(path),
    }
}

fn home_page() -> Response {
    // The three calls are independent; in parallel the page costs the slowest, not the sum.
    let (users, catalog, ratings) = thread::scope(|scope| {
        let users = scope.spawn(|| USERS.fetch());
        let catalog = scope.spawn(|| CATALOG.fetch());
        let ratings = scope.spawn(|| RATINGS.fetch());
        (
            join(users, &USERS),
            join(catalog, &CATALOG),
            join(ratings, &RATINGS),
        )
    });
    match (users, catalog, ratings) {
        (Ok(users), Ok(catalog), Ok(ratings)) => match combine(users, &catalog, &ratings) {
            Ok(page) => Response::json(200, &page),
            Err(failure) => bad_gateway(vec![failure]),
        },
        (users, catalog, ratings) => bad_gateway(
            [users.err(), catalog.err(), ratings.err()]
                .into_iter()
                .flatten()
                .collect(),
        ),
    }
}

fn join(
    handle: thread::ScopedJoinHandle<'_, Result<Json, Failure>>,
    upstream: &Upstream,
) -> Result<Json, Failure> {
    handle.join().unwrap_or_else(|_| {
        Err(Failure {
            upstream: upstream.name,
            url: upstream.url(),
            reason: "the request thread panicked".to_string(),
        })
    })
}

/// `{"users": [...], "titles": [{...title, "stars": 4.5 | null}], "ratings_version": "..."}`.
fn combine(users: Json, catalog: &Json, ratings: &Json) -> Result<Json, Failure> {
    let shape_error = |upstream: &Upstream, problem: &str| Failure {
        upstream: upstream.name,
        url: upstream.url(),
        reason: problem.to_string(),
    };
    if users.as_array().is_none() {
        return Err(shape_error(&USERS, "expected a JSON array of users"));
    }
    let titles = catalog
        .as_array()
        .ok_or_else(|| shape_error(&CATALOG, "expected a JSON array of titles"))?;
    let stars_by_title = ratings
        .get("ratings")
        .ok_or_else(|| shape_error(&RATINGS, "expected an object with a \"ratings\" field"))?;
    let titles = titles
        .iter()
        .map(|title| {
            let Json::Obj(fields) = title else {
                return Err(shape_error(&CATALOG, "expected each title to be an object"));
            };
            let id = title.get("id").map(Json::to_string).unwrap_or_default();
            let stars = stars_by_title.get(&id).cloned().unwrap_or(Json::Null);
            let mut fields = fields.clone();
            fields.push(("stars".to_string(), stars));
            Ok(Json::Obj(fields))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json::obj([
        ("users", users),
        ("titles", Json::Arr(titles)),
        (
            "ratings_version",
            ratings.get("version").cloned().unwrap_or(Json::Null),
        ),
    ]))
}

/// 502 `{"error": "upstream failed: catalog, ratings", "failed": [{upstream, url, reason}]}`.
fn bad_gateway(failures: Vec<Failure>) -> Response {
    let names: Vec<&str> = failures.iter().map(|failure| failure.upstream).collect();
    let details = failures
        .into_iter()
        .map(|failure| {
            Json::obj([
                ("upstream", Json::from(failure.upstream)),
                ("url", Json::from(failure.url)),
                ("reason", Json::from(failure.reason)),
            ])
        })
        .collect();
    Response::json(
        502,
        &Json::obj([
            (
                "error",
                Json::from(format!("upstream failed: {}", names.join(", "))),
            ),
            ("failed", Json::Arr(details)),
        ]),
    )
}
