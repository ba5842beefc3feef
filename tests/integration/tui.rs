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
        // take care of what it started.
        let _ = self.command().arg("kill-server").status();
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
