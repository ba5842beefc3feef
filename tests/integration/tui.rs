//! The terminal UI end to end: the real `fleet up` in a real terminal (tmux), driven
//! by keystrokes, read back with `capture-pane`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{wait_until, Project, TEST_MARKER_VAR, WAIT};

/// A tmux server of our own (`-L`), so tests never touch a user's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|out| out.status.success())
    }

    fn start(dir: &Path, command: &str) -> Tmux {
        let socket = format!(
            "fleet-test-{}-{}",
            std::process::id(),
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let tmux = Tmux { socket };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-x", "100", "-y", "30", "-c"])
            .arg(dir)
            .arg(command)
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    fn screen(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = self
            .command()
            .args(["send-keys", keys])
            .status()
            .expect("tmux send-keys runs");
        assert!(status.success(), "tmux send-keys {keys} failed");
    }

    fn wait_for_screen(&self, text: &str) -> String {
        let mut screen = String::new();
        let found = wait_until(WAIT, || {
            screen = self.screen();
            screen.contains(text)
        });
        assert!(
            found,
            "the screen never showed {text:?}; it shows:\n{screen}"
        );
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Closing the terminal hangs up on fleet; the project's guard and fleet's keeper
        // take care of what it started. The server is gone already when its only
        // program (`fleet tui`) quit.
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn pid_of(project: &Project, service: &str) -> u64 {
    project.service_status(service)["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{service} has no pid"))
}

#[test]
fn the_tui_shows_the_fleet_restarts_on_r_and_quits_cleanly() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; the TUI end-to-end test did not run (.ci/run installs it)");
        return;
    }
    let project = Project::new().manifest(
        r#"
[services.alpha]
command = "{helper} --name alpha --lines-per-sec 2"

[services.beta]
command = "{helper} --name beta"
"#,
    );
    let fleet = crate::support::fleet_binary();
    // After fleet exits, the shell records how it left the terminal: a sane terminal is
    // back in canonical mode with echo on.
    let script = format!(
        "env {TEST_MARKER_VAR}={dir} {fleet} up; echo \"exit=$?\" > {dir}/done.txt; stty -a > {dir}/stty.tmp; mv {dir}/stty.tmp {dir}/stty.txt; sleep 30",
        dir = project.dir().display(),
        fleet = fleet.display(),
    );
    let tmux = Tmux::start(project.dir(), &format!("sh -c '{script}'"));
    let screen = tmux.wait_for_screen("beta");
    assert!(
        screen.contains("alpha"),
        "the table lists every service:\n{screen}"
    );
    assert!(
        wait_until(WAIT, || project.service_status("beta")["pid"].is_u64()),
        "beta never started"
    );
    assert!(
        wait_until(WAIT, || project.service_status("alpha")["pid"].is_u64()),
        "alpha never started"
    );
    let alpha = pid_of(&project, "alpha");
    let beta = pid_of(&project, "beta");

    // The first row is selected: `r` restarts alpha and nothing else.
    tmux.keys("r");
    let restarted = wait_until(WAIT, || {
        let status = project.service_status("alpha");
        status["pid"].as_u64().is_some_and(|pid| pid != alpha)
    });
    assert!(
        restarted,
        "r did not restart alpha; the screen shows:\n{}",
        tmux.screen()
    );
    assert_eq!(pid_of(&project, "beta"), beta, "r touched beta");
    let new_alpha = pid_of(&project, "alpha");
    tmux.wait_for_screen(&new_alpha.to_string());

    // q asks; y stops the fleet and gives the terminal back.
    tmux.keys("q");
    tmux.wait_for_screen("Stop the fleet");
    tmux.keys("y");
    let done = project.path("done.txt");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&done)
            .is_ok_and(|t| t.contains("exit="))),
        "fleet did not exit after q, y; the screen shows:\n{}",
        tmux.screen()
    );
    let exit = std::fs::read_to_string(&done).unwrap_or_default();
    assert_eq!(exit.trim(), "exit=0");
    assert!(wait_until(WAIT, || project.path("stty.txt").exists()));
    let stty = std::fs::read_to_string(project.path("stty.txt")).unwrap_or_default();
    let flags: Vec<&str> = stty.split_whitespace().collect();
    assert!(
        flags.contains(&"icanon") && flags.contains(&"echo"),
        "the terminal was left raw:\n{stty}"
    );
    assert!(
        !crate::support::pid_alive(new_alpha as u32) && !crate::support::pid_alive(beta as u32),
        "services survived q, y"
    );
}

/// The rows of `fleet ps --json` that belong to `service`, with their pids.
fn replica_pids(project: &Project, service: &str) -> Vec<(String, Option<u64>)> {
    project
        .ps_json()
        .into_iter()
        .filter(|row| row["service"] == service)
        .map(|row| {
            let name = row["name"].as_str().unwrap_or_default().to_string();
            (name, row["pid"].as_u64())
        })
        .collect()
}

/// Table rows (not log lines) on the screen that show `name`: indented under the
/// selection marker's column.
fn table_row_shows(screen: &str, name: &str) -> bool {
    screen.lines().any(|line| {
        line.starts_with(&format!("    {name} ")) || line.starts_with(&format!("▸   {name} "))
    })
}

#[test]
fn fleet_tui_folds_replicas_into_one_row_opens_it_and_scales_with_plus() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; the TUI end-to-end test did not run (.ci/run installs it)");
        return;
    }
    let port = crate::support::free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.web]
command = "{helper} --name web --port 0 --lines-per-sec 2"
replicas = 3
socket = {port}
"#,
    );
    let fleet_up = project.up_detached(&[]);
    assert_eq!(
        fleet_up.up.code, 0,
        "fleet up -d failed: {:#?}",
        fleet_up.up
    );
    let mut before = Vec::new();
    let started = wait_until(WAIT, || {
        before = replica_pids(&project, "web");
        before.len() == 3 && before.iter().all(|(_, pid)| pid.is_some())
    });
    assert!(started, "three replicas never ran: {before:?}");

    // `fleet tui` on the running fleet: one row for web, its replicas folded.
    let fleet = crate::support::fleet_binary();
    let tmux = Tmux::start(project.dir(), &format!("{} tui", fleet.display()));
    let screen = tmux.wait_for_screen("3/3 running");
    assert!(
        screen.contains("▹ web"),
        "web is not a folded group:\n{screen}"
    );
    assert!(
        !table_row_shows(&screen, "web.2"),
        "the replicas show before the row is opened:\n{screen}"
    );
    // The group's log merges its replicas' files, each line labelled: replica 1's is
    // web.log, the others web.N.log.
    tmux.wait_for_screen("web.1 │ tick");
    tmux.wait_for_screen("web.3 │ tick");

    // Space opens the group.
    tmux.keys("Space");
    let open = tmux.wait_for_screen("▿ web");
    for replica in ["web.1", "web.2", "web.3"] {
        assert!(
            table_row_shows(&open, replica),
            "{replica} missing:\n{open}"
        );
    }

    // `+` scales web to 4; the three running replicas keep their pids.
    tmux.keys("+");
    tmux.wait_for_screen("scale web=4");
    let mut after = Vec::new();
    let scaled = wait_until(WAIT, || {
        after = replica_pids(&project, "web");
        after.len() == 4 && after.iter().all(|(_, pid)| pid.is_some())
    });
    assert!(
        scaled,
        "+ did not scale web to 4: {after:?}; the screen shows:\n{}",
        tmux.screen()
    );
    for (name, pid) in &before {
        assert!(
            after.contains(&(name.clone(), *pid)),
            "{name} was touched by the scale: {before:?} -> {after:?}"
        );
    }
    let screen = tmux.wait_for_screen("4/4 running");
    assert!(
        table_row_shows(&screen, "web.4"),
        "web.4 has no row:\n{screen}"
    );
    // The new replica's file is followed too (`fleet tui` reads the files): its
    // ticks keep coming after the first read of its file, made when its row came.
    let ticks = crate::support::regex(r"web\.4 │ tick (\d+)");
    let followed = wait_until(WAIT, || {
        ticks
            .captures_iter(&tmux.screen())
            .filter_map(|found| found[1].parse::<u32>().ok())
            .any(|tick| tick >= 8)
    });
    assert!(
        followed,
        "web.4's later lines never showed:\n{}",
        tmux.screen()
    );
    let ps = project.run(&["ps"]);
    assert_eq!(ps.code, 0, "{ps:#?}");
    let rows: Vec<&str> = ps
        .stdout
        .lines()
        .filter(|line| line.starts_with("web."))
        .collect();
    assert_eq!(rows.len(), 4, "fleet ps:\n{}", ps.stdout);

    // `q` leaves the fleet running.
    tmux.keys("q");
    assert!(
        wait_until(WAIT, || !tmux.screen().contains("4/4 running")),
        "q did not quit fleet tui:\n{}",
        tmux.screen()
    );
    assert_eq!(replica_pids(&project, "web").len(), 4);
}
