//! One runner per service: owns that service's instances and its state machine.
pub mod backoff;
pub mod builds;
pub mod runner;
pub mod state;
