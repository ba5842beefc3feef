pub mod event;
pub mod manifest;
pub mod service;
