//! The only OS and Docker boundary. Makes no policy decisions: the service runners
//! decide, this module carries out.
pub mod container;
pub mod instance;
pub mod ports;
pub mod process;
pub mod reaper;
pub mod resources;
pub mod sockdiag;

pub use instance::Instance;
