//! The harness checks itself: a failing test leaves no process behind.

use std::sync::{Arc, Mutex};

use crate::support::{pid_alive, wait_for_pidfile, wait_until, Project, WAIT};

#[test]
fn a_failing_test_leaves_no_process_behind() {
    let pids = Arc::new(Mutex::new(Vec::new()));
    let seen = pids.clone();
    let failed = std::panic::catch_unwind(move || {
        let project = Project::new().manifest(
            r#"
[services.escapes]
command = "{helper} --name escapes --setsid-grandchild {dir}/setsid.pid"
"#,
        );
        let mut fleet = project.up(&["--no-tui"]);
        let service = fleet.started_pid("escapes", WAIT);
        let grandchild = wait_for_pidfile(&project.path("setsid.pid"), WAIT);
        seen.lock()
            .expect("no other thread holds the lock")
            .extend([fleet.pid(), service, grandchild]);
        panic!("a test failing while its fleet runs (expected by this test)");
    });
    assert!(failed.is_err(), "the closure should have panicked");
    let pids = pids.lock().expect("the closure is done").clone();
    assert_eq!(pids.len(), 3, "the fleet did not start");
    // The guard's drop waited for fleet; SIGKILL of the rest may take a moment.
    assert!(
        wait_until(WAIT, || pids.iter().all(|pid| !pid_alive(*pid))),
        "left behind: {:?}",
        pids.iter()
            .filter(|pid| pid_alive(**pid))
            .collect::<Vec<_>>()
    );
}
