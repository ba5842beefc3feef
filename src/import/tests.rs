//! Golden tests of whole translations (the fixtures under `tests/fixtures/import/`,
//! snapshots in `snapshots/`), and the exact errors of bad input.

use std::path::{Path, PathBuf};

use super::{import, Context, Format};
use crate::manifest::interpolate::Variables;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

fn variables() -> Variables {
    Variables::from_pairs([
        ("DB_PASSWORD", "s3cret$"),
        ("TAG", "1.4"),
        ("API_KEY", "from-the-environment"),
    ])
}

/// Translates `file` in fixture `folder`; the manifest and the rendered warnings.
fn translate(folder: &str, file: &str, format: Format) -> (String, String) {
    let dir = fixture(folder);
    let source = std::fs::read_to_string(dir.join(file)).expect("the fixture exists");
    let variables = variables();
    let context = Context {
        path: Path::new(file),
        source_dir: &dir,
        out_dir: &dir,
        variables: &variables,
    };
    let imported = match import(format, &source, &context) {
        Ok(imported) => imported,
        Err(err) => panic!("{}", err.render(false)),
    };
    // What import writes passes `fleet check` (with the same variables).
    if let Err(err) = crate::manifest::parse_with_variables(
        &dir.join("fleet.toml"),
        &imported.manifest,
        &variables,
    ) {
        panic!("{}\n\n{}", imported.manifest, err.render(false));
    }
    let warnings = imported
        .render_warnings(Path::new(file), &source)
        .join("\n");
    (imported.manifest, warnings)
}

#[test]
fn a_compose_file_with_every_key() {
    let (manifest, warnings) = translate("shop", "compose.yaml", Format::Compose);
    insta::assert_snapshot!("shop_manifest", manifest);
    insta::assert_snapshot!("shop_warnings", warnings);
}

#[test]
fn a_procfile() {
    let (manifest, warnings) = translate("procfile", "Procfile", Format::Procfile);
    insta::assert_snapshot!("procfile_manifest", manifest);
    assert_eq!(warnings, "");
}

#[test]
fn output_in_another_folder_rebases_paths() {
    let dir = fixture("shop");
    let out = dir.join("deploy/local");
    let source = "services:\n  web:\n    build: ./web\n    volumes: [./web/static:/static]\n    env_file: web/web.env\n";
    let variables = Variables::default();
    let context = Context {
        path: Path::new("compose.yaml"),
        source_dir: &dir,
        out_dir: &out,
        variables: &variables,
    };
    let manifest = import(Format::Compose, source, &context)
        .expect("valid")
        .manifest;
    let web = dir.join("web");
    assert!(
        manifest.contains(&format!("build = {{ context = \"{}\" }}", web.display())),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!("env_file = \"{}\"", web.join("web.env").display())),
        "{manifest}"
    );
    let context = Context {
        out_dir: &dir.join(".."),
        ..context
    };
    let manifest = import(Format::Compose, source, &context)
        .expect("valid")
        .manifest;
    assert!(
        manifest.contains("build = { context = \"./shop/web\" }"),
        "{manifest}"
    );
    assert!(
        manifest.contains("volumes = [\"./shop/web/static:/static\"]"),
        "{manifest}"
    );
}

/// The rendered error of importing `source` as `file`.
fn error(file: &str, format: Format, source: &str) -> String {
    let dir = fixture("shop");
    let variables = Variables::from_pairs([("SET", "1")]);
    let context = Context {
        path: Path::new(file),
        source_dir: &dir,
        out_dir: &dir,
        variables: &variables,
    };
    match import(format, source, &context) {
        Ok(imported) => panic!("expected an error, got:\n{}", imported.manifest),
        Err(err) => err.render(false),
    }
}

#[track_caller]
fn check(file: &str, format: Format, source: &str, expected: &str) {
    let actual = error(file, format, source);
    let expected = expected.strip_prefix('\n').unwrap_or(expected);
    assert!(
        actual == expected,
        "rendered:\n{actual}\n\nexpected:\n{expected}\n"
    );
}

#[test]
fn invalid_yaml() {
    check(
        "compose.yaml",
        Format::Compose,
        "services:\n  web:\n    image: [nginx\n",
        r#"
error: invalid YAML: while parsing a flow sequence, expected ',' or ']'
 --> compose.yaml:4:1
  |
4 |
  | ^

error: could not load compose.yaml: 1 error"#,
    );
}

#[test]
fn unknown_top_level_and_service_keys() {
    check(
        "compose.yaml",
        Format::Compose,
        "servics:\n  web:\n    image: nginx\nservices:\n  web:\n    imag: nginx\n    image: nginx\n",
        r#"
error: unknown key `servics`
 --> compose.yaml:1:1
  |
1 | servics:
  | ^^^^^^^
  |
  = help: did you mean `services`?

error: unknown key `imag` in service `web`
 --> compose.yaml:6:5
  |
6 |     imag: nginx
  |     ^^^^
  |
  = help: did you mean `image`?

error: could not load compose.yaml: 2 errors"#,
    );
}

#[test]
fn a_service_with_nothing_to_run() {
    check(
        "compose.yaml",
        Format::Compose,
        "services:\n  web:\n    ports: [\"80:80\"]\n",
        r#"
error: service `web` has neither `image`, `build` nor `command`
 --> compose.yaml:2:3
  |
2 |   web:
  |   ^^^
  |
  = help: compose needs an `image` or a `build` to run a service

error: could not load compose.yaml: 1 error"#,
    );
}

#[test]
fn interpolation_errors() {
    check(
        "compose.yaml",
        Format::Compose,
        "services:\n  web:\n    image: \"app:${TAG:?set TAG to the release}\"\n    command: echo ${SET:-x\n",
        r#"
error: required variable `TAG` is not set: set TAG to the release
 --> compose.yaml:3:12
  |
3 |     image: "app:${TAG:?set TAG to the release}"
  |            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  |
  = help: set it in the environment or in .env beside the compose file; `$$` is a literal `$`

error: unclosed interpolation `${SET:-x`: a `}` is missing
 --> compose.yaml:4:14
  |
4 |     command: echo ${SET:-x
  |              ^^^^^^^^^^^^^
  |
  = help: set it in the environment or in .env beside the compose file; `$$` is a literal `$`

error: could not load compose.yaml: 2 errors"#,
    );
}

#[test]
fn a_procfile_line_without_a_colon() {
    check(
        "Procfile",
        Format::Procfile,
        "web: ./run web\n\n  worker ./run worker\nweb: again\n",
        r#"
error: expected `name: command`
 --> Procfile:3:3
  |
3 |   worker ./run worker
  |   ^^^^^^^^^^^^^^^^^^^
  |
  = help: each line of a Procfile is a process type, a colon and its command, like `web: python3 -m http.server $PORT`

error: process `web` is defined twice
 --> Procfile:4:1
  |
4 | web: again
  | ^^^

error: could not load Procfile: 2 errors"#,
    );
}

#[test]
fn empty_inputs() {
    assert!(error("compose.yaml", Format::Compose, "").contains("the compose file is empty"),);
    assert!(error("compose.yaml", Format::Compose, "name: x\n").contains("has no `services`"));
    assert!(error("Procfile", Format::Procfile, "# nothing\n").contains("has no process"));
}

/// Found by the `compose` fuzz target: a control character in a key that is not
/// imported was copied into the manifest's comment about it, where TOML forbids it, so
/// `fleet import` wrote a file that does not parse.
#[test]
fn control_characters_in_what_is_not_imported_stay_out_of_comments() {
    let dir = fixture("shop");
    let variables = variables();
    let context = Context {
        path: Path::new("compose.yaml"),
        source_dir: &dir,
        out_dir: &dir,
        variables: &variables,
    };
    let source =
        "services:\n  web:\n    image: nginx\n    deploy:\n      re\u{1}start_policy: {condition: any}\n";
    let imported = match import(Format::Compose, source, &context) {
        Ok(imported) => imported,
        Err(err) => panic!("{}", err.render(false)),
    };
    if let Err(err) = toml::from_str::<toml::Table>(&imported.manifest) {
        panic!("{}\n\n{err}", imported.manifest);
    }
    assert!(
        imported.manifest.contains("`deploy.re\\u{1}start_policy`"),
        "{}",
        imported.manifest
    );
}
