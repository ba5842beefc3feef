//! Golden exports: a manifest that uses every key, the demo's `fleet.toml` and
//! `examples/mixed`, each to Swarm and Kubernetes, with the report. Paths of the
//! temporary folder are shown as `/ROOT`.

use std::path::{Path, PathBuf};

use super::{export, Export, Options, PublishMode, Target};
use crate::manifest::{self, Activation};

/// The folder of the manifest that uses every key of a service and of `[project]`.
const EVERY_KEY: &str = "tests/fixtures/export/every-key";

/// The manifest of `EVERY_KEY`, its text, and the folder that `/ROOT` stands for in
/// the snapshots.
fn every_key() -> (PathBuf, manifest::Manifest, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(EVERY_KEY);
    let path = dir.join("fleet.toml");
    let source = std::fs::read_to_string(&path).expect("read the fixture");
    let variables = crate::manifest::interpolate::Variables::default();
    let manifest = match manifest::parse_with_variables(&path, &source, &variables) {
        Ok(manifest) => manifest,
        Err(err) => panic!("{}", err.render(false)),
    };
    (dir, manifest, source)
}

fn run(manifest: &manifest::Manifest, source: &str, target: Target, profiles: &[&str]) -> Export {
    let profiles: Vec<String> = profiles.iter().map(|p| p.to_string()).collect();
    let activation = Activation::new(&profiles, None, &[]);
    let options = Options {
        services: manifest.selection(&activation),
        publish: PublishMode::Ingress,
        namespace: "default".to_string(),
    };
    export(manifest, source, target, &options).unwrap_or_else(|err| panic!("{err}"))
}

/// The report as the CLI prints it, one finding a line.
fn report_text(export: &Export) -> String {
    let report = &export.report;
    let mut lines = Vec::new();
    for (service, why) in &report.local {
        lines.push(format!("local: {service}: {why}"));
    }
    for finding in &report.unmapped {
        lines.push(format!("warning: {}", finding.render("fleet.toml")));
    }
    for finding in &report.notes {
        lines.push(format!("note: {}", finding.render("fleet.toml")));
    }
    lines.push(report.summary());
    lines.join("\n")
}

fn scrub(text: &str, root: &Path) -> String {
    text.replace(&root.display().to_string(), "/ROOT")
}

#[test]
fn every_key_to_swarm() {
    let (dir, manifest, source) = every_key();
    let exported = run(&manifest, &source, Target::Swarm, &["jobs"]);
    insta::assert_snapshot!("every_key_swarm", scrub(&exported.to_text(), &dir));
    insta::assert_snapshot!(
        "every_key_swarm_report",
        scrub(&report_text(&exported), &dir)
    );
}

#[test]
fn every_key_to_kubernetes() {
    let (dir, manifest, source) = every_key();
    let exported = run(&manifest, &source, Target::Kubernetes, &["jobs"]);
    insta::assert_snapshot!("every_key_kubernetes", scrub(&exported.to_text(), &dir));
    insta::assert_snapshot!(
        "every_key_kubernetes_report",
        scrub(&report_text(&exported), &dir)
    );
}

#[test]
fn host_mode_publishes_on_the_node_and_resolves_names_to_tasks() {
    let (_dir, manifest, source) = every_key();
    let activation = Activation::default();
    let options = Options {
        services: manifest.selection(&activation),
        publish: PublishMode::Host,
        namespace: "default".to_string(),
    };
    let exported = export(&manifest, &source, Target::Swarm, &options).expect("export");
    let text = exported.to_text();
    assert!(text.contains("mode: host"), "{text}");
    assert!(!text.contains("mode: ingress"), "{text}");
    assert_eq!(text.matches("endpoint_mode: dnsrr").count(), 6, "{text}");
    // Without the profile, the worker is not selected at all.
    assert!(!exported.report.exported.contains(&"worker".to_string()));
}

fn repository_manifest(relative: &str) -> (manifest::Manifest, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let source = std::fs::read_to_string(&path).expect("read manifest");
    let manifest = manifest::load(&path).unwrap_or_else(|err| panic!("{}", err.render(false)));
    (manifest, source)
}

#[test]
fn the_demo_to_swarm_and_kubernetes() {
    let (manifest, source) = repository_manifest("fleet.toml");
    let swarm = run(&manifest, &source, Target::Swarm, &[]);
    insta::assert_snapshot!("demo_swarm", swarm.to_text());
    insta::assert_snapshot!("demo_swarm_report", report_text(&swarm));
    let kubernetes = run(&manifest, &source, Target::Kubernetes, &[]);
    insta::assert_snapshot!("demo_kubernetes", kubernetes.to_text());
    insta::assert_snapshot!("demo_kubernetes_report", report_text(&kubernetes));
}

#[test]
fn the_mixed_example_to_swarm_and_kubernetes() {
    let (manifest, source) = repository_manifest("examples/mixed/fleet.toml");
    let swarm = run(&manifest, &source, Target::Swarm, &[]);
    insta::assert_snapshot!("mixed_swarm", swarm.to_text());
    let kubernetes = run(&manifest, &source, Target::Kubernetes, &[]);
    insta::assert_snapshot!("mixed_kubernetes", kubernetes.to_text());
    insta::assert_snapshot!("mixed_kubernetes_report", report_text(&kubernetes));
}

#[test]
fn a_literal_dollar_is_escaped_for_each_engine() {
    let (_dir, manifest, source) = every_key();
    let swarm = run(&manifest, &source, Target::Swarm, &["jobs"]).to_text();
    assert!(swarm.contains("LITERAL: \"costs $$5\""), "{swarm}");
    let kubernetes = run(&manifest, &source, Target::Kubernetes, &["jobs"]).to_text();
    assert!(kubernetes.contains("value: \"costs $$5\""), "{kubernetes}");
}

#[test]
fn env_wins_over_the_env_file_and_the_file_stays_in_its_secret() {
    let (_dir, manifest, source) = every_key();
    let kubernetes = run(&manifest, &source, Target::Kubernetes, &["jobs"]).to_text();
    // db: `env` sets POSTGRES_USER over the file's, the password only in the Secret.
    let secret = kubernetes
        .split("---\n")
        .find(|doc| doc.contains("kind: Secret"))
        .expect("a Secret");
    assert!(secret.contains("POSTGRES_PASSWORD: s3cret"), "{secret}");
    let db = kubernetes
        .split("---\n")
        .find(|doc| doc.contains("kind: Deployment") && doc.contains("name: db\n"))
        .expect("db's Deployment");
    assert!(
        db.contains("- name: POSTGRES_USER\n              value: app"),
        "{db}"
    );
    assert!(!db.contains("s3cret"), "{db}");
    assert!(db.contains("secretRef"), "{db}");
}

#[test]
fn names_kubernetes_refuses_are_changed_and_reported() {
    assert_eq!(super::kubernetes::k8s_name("search_index"), "search-index");
    assert_eq!(super::kubernetes::k8s_name("API.v2"), "api-v2");
    assert_eq!(super::kubernetes::k8s_name("9lives"), "s-9lives");
    let (_dir, manifest, source) = every_key();
    let exported = run(&manifest, &source, Target::Kubernetes, &[]);
    assert!(
        exported
            .report
            .unmapped
            .iter()
            .any(|finding| finding.service.as_deref() == Some("search_index")
                && finding.message.contains("is named `search-index` there")),
        "{:#?}",
        exported.report.unmapped
    );
}
