//! `fleet import`: docker compose files and Procfiles translated into a `fleet.toml`.
mod yaml;
