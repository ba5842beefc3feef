//! `cache`: a tiny in-memory key-value store over HTTP, std only, so it compiles with a
//! bare `rustc` into a static binary for a `FROM scratch` image (no registry needed).
//!
//! Routes: `GET /health` -> `ok`; `GET /get/KEY` -> the value or 404;
//! `GET /set/KEY/VALUE` -> stores it. Listens on 0.0.0.0:$PORT (default 6380) so the
//! port Docker publishes reaches it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

fn main() {
    let port = std::env::var("PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(6380);
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cache: cannot listen on 0.0.0.0:{port}: {err}");
            std::process::exit(1);
        }
    };
    println!("cache listening on 0.0.0.0:{port}");
    let store: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    for stream in listener.incoming().flatten() {
        let store = store.clone();
        std::thread::spawn(move || serve(stream, &store));
    }
}

fn serve(mut stream: TcpStream, store: &Mutex<HashMap<String, String>>) {
    let mut first = String::new();
    if BufReader::new(&stream).read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, body) = match parts.as_slice() {
        ["health"] => (200, "ok".to_string()),
        ["get", key] => match store.lock().ok().and_then(|s| s.get(*key).cloned()) {
            Some(value) => (200, value),
            None => (404, format!("no key {key}")),
        },
        ["set", key, value] => {
            if let Ok(mut s) = store.lock() {
                s.insert(key.to_string(), value.to_string());
            }
            println!("cache: set {key}");
            (200, "stored".to_string())
        }
        _ => (404, "routes: /health /get/KEY /set/KEY/VALUE".to_string()),
    };
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
