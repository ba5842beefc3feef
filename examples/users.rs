//! Demo service `users` (default port 7001): the accounts of the streaming-site demo.
//!
//! Routes: `GET /users` (JSON list), `GET /users/<id>` (one user, 404 if unknown),
//! `GET /health` (`ok`). Port from `--port N`, env `PORT`, or a socket passed by fleet.

mod common;

use common::{Json, Request, Response};

const NAME: &str = "users";
const DEFAULT_PORT: u16 = 7001;

struct User {
    id: u32,
    name: &'static str,
    email: &'static str,
    plan: &'static str,
}

const USERS: [User; 4] = [
    User {
        id: 1,
        name: "Ada Lovelace",
        email: "ada@example.com",
        plan: "premium",
    },
    User {
        id: 2,
        name: "Grace Hopper",
        email: "grace@example.com",
        plan: "standard",
    },
    User {
        id: 3,
        name: "Linus \"Penguin\" Torvalds",
        email: "linus@example.com",
        plan: "basic",
    },
    User {
        id: 4,
        name: "Margaret Hamilton",
        email: "margaret@example.com",
        plan: "premium",
    },
];

fn main() {
    let listener = common::start_demo_service(NAME, DEFAULT_PORT);
    common::serve(listener, String::new(), |request| route(request).into())
}

fn route(request: &Request) -> Response {
    match request.path() {
        "/health" => Response::text(200, "ok"),
        "/users" => Response::json(200, &Json::Arr(USERS.iter().map(user_json).collect())),
        path => match path.strip_prefix("/users/") {
            Some(id) => match id.parse::<u32>() {
                Ok(id) => match USERS.iter().find(|user| user.id == id) {
                    Some(user) => Response::json(200, &user_json(user)),
                    None => Response::json_error(404, &format!("no user with id {id}")),
                },
                Err(_) => Response::json_error(400, &format!("user id {id:?} is not a number")),
            },
            None => Response::not_found(path),
        },
    }
}

fn user_json(user: &User) -> Json {
    Json::obj([
        ("id", Json::from(user.id)),
        ("name", Json::from(user.name)),
        ("email", Json::from(user.email)),
        ("plan", Json::from(user.plan)),
    ])
}
