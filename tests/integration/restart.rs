//! Crashes: restart delays that grow, a crash loop that ends in `failed`, and a crashed
//! instance's process group that goes with it.

use std::time::Duration;

use crate::support::{
    free_port, pid_alive, port_answers, read_pidfile, wait_for_pidfile, wait_until, Project, WAIT,
};

#[test]
fn a_crashing_service_restarts_with_a_growing_delay() {
    let project = Project::new().manifest(
        r#"
[services.svc]
command = "{helper} --exit-after 0 --exit-code 3"
backoff = { initial = "100ms", max = "10s" }
max_restarts = 10
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let announced = fleet.wait_for_lines("svc: exited with code 3, restart ", 3, WAIT);
    assert_eq!(
        announced,
        [
            "svc: exited with code 3, restart 1 in 100ms",
            "svc: exited with code 3, restart 2 in 200ms",
            "svc: exited with code 3, restart 3 in 400ms",
        ]
    );
    fleet.started_pids("svc", 4, WAIT);

    // When each generation started, from the log file's start boundaries.
    let starts: Vec<u64> = project
        .log_entries("svc")
        .iter()
        .filter(|entry| entry.tag == "---" && entry.text.starts_with("--- generation "))
        .map(|entry| entry.at_ms())
        .take(4)
        .collect();
    assert_eq!(starts.len(), 4, "{:#?}", project.log_lines("svc"));
    let gaps: Vec<u64> = starts.windows(2).map(|pair| pair[1] - pair[0]).collect();
    // Lower bounds only: a restart never comes before its announced delay (less 1 ms,
    // as the timestamps are truncated to milliseconds). How much later is the machine's
    // business, so growth is checked between delays far apart (100 ms vs 400 ms).
    for (gap, delay) in gaps.iter().zip([100, 200, 400]) {
        assert!(
            *gap + 1 >= delay,
            "restart came {gap} ms after the start, before its {delay} ms delay: {gaps:?}"
        );
    }
    assert!(
        gaps[2] > gaps[0],
        "the restart delay did not grow: {gaps:?}"
    );
}

#[test]
fn a_crash_loop_ends_in_failed_and_spares_the_other_services() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.crasher]
command = "{helper} --name crasher --exit-after 0"
max_restarts = 2
restart_window = "60s"
backoff = { initial = "10ms" }

[services.steady]
command = "{helper} --name steady --port {port}"
ports = [{port}]
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let steady = fleet.started_pid("steady", WAIT);
    fleet.wait_for_output(
        "crasher: failed: crashed 3 times within 1m, not restarting",
        WAIT,
    );
    assert!(
        fleet
            .stdout_lines()
            .contains(&"crasher: exited with code 1".to_string()),
        "the last crash is reported without a restart\n{}",
        fleet.dump()
    );

    // Asserting that something does NOT happen: a failed service must not come back.
    // 300 ms is 30 times its restart delay.
    std::thread::sleep(Duration::from_millis(300));
    let crasher_starts = fleet
        .status_lines()
        .iter()
        .filter(|(service, text)| service == "crasher" && text.starts_with("started (pid "))
        .count();
    assert_eq!(crasher_starts, 3, "{}", fleet.dump());

    assert!(
        pid_alive(steady),
        "steady (pid {steady}) died\n{}",
        fleet.dump()
    );
    assert!(
        wait_until(WAIT, || port_answers(port)),
        "steady does not answer on port {port}"
    );
    assert!(fleet
        .status_lines()
        .iter()
        .all(|(service, text)| service != "steady" || !text.contains("exited")));
}

#[test]
fn a_crashed_instance_takes_its_process_group_before_the_replacement_starts() {
    // Generation 1 forks a grandchild and crashes after 300 ms; generation 2 (found by the
    // marker file generation 1 left) first records whether generation 1's grandchild
    // still runs (a zombie counts as gone: it has exited), then runs for good.
    let project = Project::new().manifest(
        r#"
[services.svc]
restart = "on-failure"
backoff = { initial = "10ms" }
command = '''
if [ -e {dir}/crashed ]; then
  gone=yes
  stat=/proc/$(cat {dir}/gc1.pid)/stat
  if [ -r "$$stat" ] && ! grep -q ') Z' "$$stat"; then gone=no; fi
  echo "generation 1 grandchild gone at restart: $$gone"
  exec {helper} --grandchild {dir}/gc2.pid
fi
touch {dir}/crashed
exec {helper} --grandchild {dir}/gc1.pid --exit-after 300
'''
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let generations = fleet.started_pids("svc", 2, WAIT);
    fleet.wait_for_output("svc: exited with code 1, restart 1 in 10ms", WAIT);
    let grandchild_1 = read_pidfile(&project.path("gc1.pid"))
        .expect("generation 1 wrote its grandchild's pid before it crashed");
    let grandchild_2 = wait_for_pidfile(&project.path("gc2.pid"), WAIT);

    let verdict =
        fleet.wait_for_output_of("svc", "generation 1 grandchild gone at restart: ", WAIT);
    assert_eq!(
        verdict,
        "generation 1 grandchild gone at restart: yes",
        "generation 2 started while generation 1's grandchild {grandchild_1} still ran\n{}",
        fleet.dump()
    );
    assert!(!pid_alive(grandchild_1));
    assert!(!pid_alive(generations[0]));
    assert!(pid_alive(generations[1]), "{}", fleet.dump());
    assert!(pid_alive(grandchild_2), "{}", fleet.dump());
}
