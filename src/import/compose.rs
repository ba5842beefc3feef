//! A docker compose file (the Compose Specification) -> a draft `fleet.toml`.
//!
//! Owns the meaning of compose's keys in fleet's terms: which map one to one, which
//! map with a difference (said in a warning), and which fleet cannot express (a
//! warning and the source lines as a comment where the key would go). Reads the tree
//! from `yaml`; must not write files nor validate the result.
//!
//! Theory of operation: the file is parsed (anchors and merge keys resolved), every
//! scalar value is interpolated as compose does (an unset variable becomes empty, with
//! a warning; a malformed expression or a required variable unset is an error), then
//! each service is translated key by key. Services depended on with
//! `service_healthy` that have no `healthcheck` of their own get fleet's
//! `health = { docker = true }`: compose then waits for the image's `HEALTHCHECK`.

use std::time::Duration;

use super::yaml::{self, Node, NodeKind};
use super::{DraftService, Translation};
use crate::manifest::diagnostic::suggest;
use crate::manifest::interpolate::{interpolate, Variables};
use crate::manifest::parse_duration;
use crate::manifest::render::TomlValue;

/// Every top-level key of the Compose Specification.
const TOP_LEVEL_KEYS: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

/// Every service key of the Compose Specification.
const SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

/// Why fleet cannot express some service keys, for their warnings.
const WHY_NOT: &[(&str, &str)] = &[
    (
        "container_name",
        "fleet names its containers <project>-<service>-<generation>",
    ),
    (
        "entrypoint",
        "fleet cannot override an image's entrypoint: build an image whose ENTRYPOINT is this",
    ),
    (
        "working_dir",
        "fleet cannot set a container's working directory: set WORKDIR in its image",
    ),
    (
        "user",
        "fleet cannot set a container's user: set USER in its image",
    ),
    (
        "labels",
        "fleet labels its containers with its own labels only",
    ),
    (
        "network_mode",
        "fleet runs every container on the project's network",
    ),
    (
        "links",
        "containers reach each other by service name on fleet's network",
    ),
    (
        "extends",
        "fleet reads one file: copy the extended service's keys here",
    ),
    (
        "secrets",
        "fleet has no secrets: mount the file with `volumes`",
    ),
    (
        "configs",
        "fleet has no configs: mount the file with `volumes`",
    ),
    ("env_file", "fleet reads one env_file per service"),
];

/// What fleet puts in a comment for keys that have no reason listed in [`WHY_NOT`].
const NOT_SUPPORTED: &str = "fleet does not support it";

pub(super) fn translate(translation: &mut Translation<'_>) {
    let root = match yaml::parse(translation.source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            translation.error("the compose file is empty", 0..0).help =
                Some("a compose file has a `services:` mapping".to_string());
            return;
        }
        Err(diagnostic) => {
            translation.errors.push(diagnostic);
            return;
        }
    };
    let Some(mut root) = expect_mapping(translation, root, "the compose file") else {
        return;
    };
    let variables = translation.context.variables.clone();
    interpolate_tree(translation, &mut root, &variables, false);
    if !translation.errors.is_empty() {
        return;
    }
    let Some(entries) = root.mapping() else {
        return;
    };
    let mut services_node = None;
    for (key, value) in entries {
        let name = key.scalar().unwrap_or_default();
        if name.starts_with("x-") {
            continue;
        }
        match name {
            "services" => services_node = Some((key, value)),
            "name" => {
                translation.draft.project_name = value.scalar().map(str::to_string);
            }
            "version" => {
                // Obsolete in the Compose Specification; compose ignores it too.
            }
            "volumes" => top_level_volumes(translation, key, value),
            "networks" => top_level_networks(translation, key, value),
            _ if TOP_LEVEL_KEYS.contains(&name) => {
                let message = format!("top-level `{name}` is not supported by fleet");
                let comment = translation.warn(key.span.clone(), message, Some(whole(key, value)));
                translation.draft.project_comments.extend(comment);
            }
            _ => unknown_key(translation, key, TOP_LEVEL_KEYS, ""),
        }
    }
    let Some((services_key, services)) = services_node else {
        translation.error("the compose file has no `services`", 0..0);
        return;
    };
    let Some(service_entries) = services.mapping().filter(|entries| !entries.is_empty()) else {
        translation.error("`services` has no service", services_key.span.clone());
        return;
    };
    let names: Vec<String> = service_entries
        .iter()
        .filter_map(|(key, _)| key.scalar().map(str::to_string))
        .collect();
    let root_volumes = root.get("volumes").cloned();
    let mut needs_image_health: Vec<String> = Vec::new();
    let mut drafts = Vec::new();
    for (key, value) in service_entries {
        let name = key.scalar().unwrap_or_default().to_string();
        let mut service = Service {
            translation,
            name: &name,
            names: &names,
            root_volumes: root_volumes.as_ref(),
            draft: DraftService::new(&name),
            container: false,
            healthy_dependencies: Vec::new(),
        };
        service.translate(key, value);
        needs_image_health.extend(service.healthy_dependencies);
        drafts.push((
            service.draft,
            service.container,
            value.get("healthcheck").is_some(),
        ));
    }
    for (mut draft, container, has_healthcheck) in drafts {
        if container && !has_healthcheck && needs_image_health.contains(&draft.name) {
            // compose waits for the image's own HEALTHCHECK; so does fleet with this.
            draft.set(
                "health",
                TomlValue::Table(vec![("docker".into(), TomlValue::Boolean(true))]),
            );
        }
        translation.draft.services.push(draft);
    }
    translation.draft.header = vec![
        format!(
            "# Imported from {} by `fleet import`.",
            translation.context.file_name()
        ),
        "# Variables were resolved when importing; a `$` in a value is written `$$`.".to_string(),
    ];
}

/// The range from a key to the end of its value, for the comment that keeps them.
fn whole(key: &Node, value: &Node) -> std::ops::Range<usize> {
    key.span.start..last_end(value).max(key.span.end)
}

/// Where a node's text really ends: a block collection's own end is where the next
/// token starts, often on a later line.
fn last_end(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar { .. } => node.span.end,
        NodeKind::Sequence(items) => items.last().map_or(node.span.end, last_end),
        NodeKind::Mapping(entries) => entries.last().map_or(node.span.end, |(key, value)| {
            last_end(value).max(key.span.end)
        }),
    }
}

fn expect_mapping(translation: &mut Translation<'_>, node: Node, what: &str) -> Option<Node> {
    if node.mapping().is_some() {
        return Some(node);
    }
    translation.error(
        format!("{what} must be a mapping, found a {}", node.type_name()),
        node.span.clone(),
    );
    None
}

fn unknown_key(translation: &mut Translation<'_>, key: &Node, known: &[&str], context: &str) {
    let name = key.scalar().unwrap_or_default();
    let suggestion = suggest(name, known.iter().copied());
    let diagnostic = translation.error(format!("unknown key `{name}`{context}"), key.span.clone());
    diagnostic.help = Some(match suggestion {
        Some(suggestion) => format!("did you mean `{suggestion}`?"),
        None => "compose allows only the keys of the Compose Specification, and `x-` extensions"
            .to_string(),
    });
}

/// Interpolates every scalar value (mapping keys stay as written), as compose does.
fn interpolate_tree(
    translation: &mut Translation<'_>,
    node: &mut Node,
    variables: &Variables,
    is_key: bool,
) {
    match &mut node.kind {
        NodeKind::Scalar { text, .. } if !is_key && text.contains('$') => {
            match interpolate(text, variables) {
                Ok(done) => {
                    for (name, _) in &done.unset {
                        translation.warnings.push(super::Warning {
                            span: node.span.clone(),
                            message: format!(
                                "variable `{name}` is not set: it was replaced by nothing, as compose does"
                            ),
                        });
                    }
                    *text = done.text;
                }
                Err(err) => {
                    let span = node.span.clone();
                    translation.error(err.message, span).help = Some(
                        "set it in the environment or in .env beside the compose file; `$$` is a literal `$`"
                            .to_string(),
                    );
                }
            }
        }
        NodeKind::Scalar { .. } => {}
        NodeKind::Sequence(items) => {
            for item in items {
                interpolate_tree(translation, item, variables, false);
            }
        }
        NodeKind::Mapping(entries) => {
            for (_, value) in entries {
                interpolate_tree(translation, value, variables, false);
            }
        }
    }
}

fn top_level_volumes(translation: &mut Translation<'_>, key: &Node, value: &Node) {
    for (name, definition) in value.mapping().unwrap_or_default() {
        let volume = name.scalar().unwrap_or_default();
        for (option, option_value) in definition.mapping().unwrap_or_default() {
            let option_name = option.scalar().unwrap_or_default();
            if matches!(option_name, "name" | "external") || option_name.starts_with("x-") {
                continue;
            }
            let message = format!("volume `{volume}`: `{option_name}` is not supported: fleet creates plain local volumes");
            let comment = translation.warn(
                option.span.clone(),
                message,
                Some(whole(option, option_value)),
            );
            translation.draft.project_comments.extend(comment);
        }
    }
    if value.mapping().is_some_and(|entries| !entries.is_empty()) {
        let message = "named volumes keep the names written here; compose prefixes them with the project name (`<project>_<volume>`), so the data of compose's volumes is not reused".to_string();
        let comment = translation.warn(key.span.clone(), message, None);
        translation.draft.project_comments.extend(comment);
    }
}

/// The name a named volume has on the engine: `name:` when given, else as written.
fn volume_name<'n>(root_volumes: Option<&'n Node>, volume: &'n str) -> &'n str {
    root_volumes
        .and_then(|volumes| volumes.get(volume))
        .and_then(|definition| definition.get("name"))
        .and_then(Node::scalar)
        .unwrap_or(volume)
}

fn top_level_networks(translation: &mut Translation<'_>, key: &Node, value: &Node) {
    let custom: Vec<&str> = value
        .mapping()
        .unwrap_or_default()
        .iter()
        .filter_map(|(name, _)| name.scalar())
        .filter(|name| *name != "default")
        .collect();
    let has_default_options = value
        .get("default")
        .is_some_and(|default| !default.is_null());
    if custom.is_empty() && !has_default_options {
        return;
    }
    let message = "fleet puts every container on one network, `fleet-<project>`, where each is reachable by its service name; these networks are not created".to_string();
    let comment = translation.warn(key.span.clone(), message, Some(whole(key, value)));
    translation.draft.project_comments.extend(comment);
}

/// One service being translated.
struct Service<'t, 'a> {
    translation: &'t mut Translation<'a>,
    name: &'t str,
    names: &'t [String],
    /// The file's top-level `volumes`, where named volumes may get their real names.
    root_volumes: Option<&'t Node>,
    draft: DraftService,
    /// Whether it runs in a container (it has an `image` or a `build`).
    container: bool,
    /// Services this one waits for with `service_healthy`.
    healthy_dependencies: Vec<String>,
}

impl Service<'_, '_> {
    fn translate(&mut self, key: &Node, value: &Node) {
        let Some(entries) = value.mapping() else {
            if value.is_null() {
                self.translation
                    .error(
                        format!("service `{}` is empty", self.name),
                        key.span.clone(),
                    )
                    .help = Some("give it an `image`, a `build` or a `command`".to_string());
            } else {
                self.translation.error(
                    format!(
                        "service `{}` must be a mapping, found a {}",
                        self.name,
                        value.type_name()
                    ),
                    value.span.clone(),
                );
            }
            return;
        };
        if !is_valid_name(self.name) {
            self.translation.error(
                format!("invalid service name `{}`", self.name),
                key.span.clone(),
            ).help = Some("fleet's service names use letters, digits, `-`, `_` and `.`, starting with a letter or digit".to_string());
        }
        let has = |name: &str| value.get(name).is_some_and(|node| !node.is_null());
        self.container = has("image") || has("build");
        if !self.container && !has("command") {
            self.translation
                .error(
                    format!(
                        "service `{}` has neither `image`, `build` nor `command`",
                        self.name
                    ),
                    key.span.clone(),
                )
                .help = Some("compose needs an `image` or a `build` to run a service".to_string());
            return;
        }
        if !self.container {
            let message = format!(
                "service `{}`: no `image` nor `build`: imported as a process that runs `command` on this machine",
                self.name
            );
            let comment = self.translation.warn(key.span.clone(), message, None);
            self.draft.trailing.extend(comment);
        }
        // Keys in fleet's order, whatever the file's.
        const ORDER: &[&str] = &[
            "image",
            "build",
            "command",
            "env_file",
            "environment",
            "depends_on",
            "ports",
            "volumes",
            "init",
            "healthcheck",
            "restart",
            "deploy",
            "scale",
            "stop_signal",
            "stop_grace_period",
            "profiles",
            "develop",
        ];
        let mut ordered: Vec<&(Node, Node)> = entries.iter().collect();
        ordered.sort_by_key(|(name, _)| {
            ORDER
                .iter()
                .position(|known| Some(*known) == name.scalar())
                .unwrap_or(ORDER.len())
        });
        for (name_node, node) in ordered {
            let name = name_node.scalar().unwrap_or_default();
            if name.starts_with("x-") {
                continue;
            }
            match name {
                "image" => self.image(node),
                "build" => self.build(node),
                "command" => self.command(node),
                "environment" => self.environment(node),
                "env_file" => self.env_file(node),
                "ports" => self.ports(node),
                "expose" => {}
                "volumes" => self.volumes(node),
                "init" if self.container => self.init(node),
                "depends_on" => self.depends_on(node),
                "healthcheck" => self.healthcheck(name_node, node),
                "restart" => self.restart(node),
                "deploy" => self.deploy(node),
                "scale" => self.replicas(node),
                "stop_signal" => self.string_key("stop_signal", node),
                "stop_grace_period" => self.duration_key("stop_timeout", node),
                "profiles" => self.profiles(node),
                "develop" => self.develop(node),
                "networks" => self.networks(name_node, node),
                "working_dir" if !self.container => {
                    if let Some(dir) = self.text(node) {
                        let dir = self.translation.context.rebase(&dir);
                        self.draft.set("cwd", TomlValue::string(dir));
                    }
                }
                _ if SERVICE_KEYS.contains(&name) => self.unsupported(name_node, node, None),
                _ => unknown_key(
                    self.translation,
                    name_node,
                    SERVICE_KEYS,
                    &format!(" in service `{}`", self.name),
                ),
            }
        }
        if value.get("restart").is_none()
            && value
                .get("deploy")
                .and_then(|deploy| deploy.get("restart_policy"))
                .is_none()
        {
            // compose's default is `no`; fleet's would restart a crashed service.
            self.draft.set("restart", TomlValue::string("never"));
        }
    }

    /// Records a key fleet cannot express: a warning, and its source as a comment.
    fn unsupported(&mut self, key: &Node, value: &Node, why: Option<&str>) {
        let name = key.scalar().unwrap_or_default();
        let why = why
            .or_else(|| {
                WHY_NOT
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|(_, why)| *why)
            })
            .unwrap_or(NOT_SUPPORTED);
        let message = format!("service `{}`: `{name}` is not supported: {why}", self.name);
        let comment = self
            .translation
            .warn(key.span.clone(), message, Some(whole(key, value)));
        self.draft.trailing.extend(comment);
    }

    /// A warning about part of a key; its comment goes above the key.
    fn partly(&mut self, node: &Node, message: String) -> Vec<String> {
        let message = format!("service `{}`: {message}", self.name);
        let lines = node.span.start..last_end(node);
        self.translation
            .warn(node.span.clone(), message, Some(lines))
    }

    fn expected(&mut self, node: &Node, what: &str) {
        self.translation.error(
            format!("expected {what}, found a {}", node.type_name()),
            node.span.clone(),
        );
    }

    fn text(&mut self, node: &Node) -> Option<String> {
        match node.scalar() {
            Some(text) if !node.is_null() => Some(text.to_string()),
            _ => {
                self.expected(node, "a value");
                None
            }
        }
    }

    fn image(&mut self, node: &Node) {
        if let Some(image) = self.text(node) {
            self.draft.set("image", TomlValue::string(image));
        }
    }

    fn build(&mut self, node: &Node) {
        if let Some(context) = node.scalar() {
            let context = self.translation.context.rebase(context);
            self.draft.set(
                "build",
                TomlValue::Table(vec![("context".into(), TomlValue::string(context))]),
            );
            return;
        }
        let Some(entries) = node.mapping() else {
            self.expected(node, "a build context or a mapping");
            return;
        };
        let mut table = vec![(
            "context".to_string(),
            TomlValue::string(self.translation.context.rebase(".")),
        )];
        let mut comments = Vec::new();
        for (key, value) in entries {
            let name = key.scalar().unwrap_or_default();
            match name {
                "context" => {
                    if let Some(context) = self.text(value) {
                        table[0].1 = TomlValue::string(self.translation.context.rebase(&context));
                    }
                }
                "dockerfile" => {
                    if let Some(dockerfile) = self.text(value) {
                        table.push(("dockerfile".into(), TomlValue::string(dockerfile)));
                    }
                }
                "args" => {
                    let args = self.key_values(value);
                    table.push(("args".into(), TomlValue::Table(args)));
                }
                _ if name.starts_with("x-") => {}
                _ => {
                    let why = if name == "target" {
                        "fleet builds the Dockerfile's last stage; move the target stage last"
                    } else {
                        NOT_SUPPORTED
                    };
                    comments.extend(
                        self.partly(key, format!("`build.{name}` is not supported: {why}")),
                    );
                }
            }
        }
        self.draft
            .set_with("build", TomlValue::Table(table), comments);
    }

    /// A mapping or a `KEY=VALUE` list, as `environment` and `build.args` are written;
    /// a key without a value takes the variable from the environment when fleet loads
    /// the manifest.
    fn key_values(&mut self, node: &Node) -> Vec<(String, TomlValue)> {
        let mut pairs: Vec<(String, TomlValue)> = Vec::new();
        let passthrough = |key: &str| TomlValue::Template(format!("${{{key}:-}}"));
        match &node.kind {
            NodeKind::Mapping(entries) => {
                for (key, value) in entries {
                    let key = key.scalar().unwrap_or_default().to_string();
                    let value = if value.is_null() {
                        passthrough(&key)
                    } else if let Some(text) = value.scalar() {
                        TomlValue::string(text)
                    } else {
                        self.expected(value, "a value");
                        continue;
                    };
                    pairs.push((key, value));
                }
            }
            NodeKind::Sequence(items) => {
                for item in items {
                    let Some(text) = item.scalar() else {
                        self.expected(item, "`KEY=VALUE`");
                        continue;
                    };
                    match text.split_once('=') {
                        Some((key, value)) => {
                            pairs.push((key.to_string(), TomlValue::string(value)))
                        }
                        None => pairs.push((text.to_string(), passthrough(text))),
                    }
                }
            }
            NodeKind::Scalar { .. } if node.is_null() => {}
            NodeKind::Scalar { .. } => self.expected(node, "a mapping or a list"),
        }
        // A later entry for the same key wins, as in compose.
        let mut unique: Vec<(String, TomlValue)> = Vec::new();
        for (key, value) in pairs {
            unique.retain(|(seen, _)| *seen != key);
            unique.push((key, value));
        }
        unique
    }

    fn command(&mut self, node: &Node) {
        let argv = match self.argv(node) {
            Some(argv) => argv,
            None => return,
        };
        if argv.is_empty() {
            return;
        }
        self.draft.set("command", TomlValue::strings(argv));
    }

    /// A command as compose reads it: a list, or a string split into words as a shell
    /// would split them (but never run by one).
    fn argv(&mut self, node: &Node) -> Option<Vec<String>> {
        if node.is_null() {
            return Some(Vec::new());
        }
        match &node.kind {
            NodeKind::Scalar { text, .. } => match split_words(text) {
                Ok(words) => Some(words),
                Err(problem) => {
                    self.translation.error(
                        format!("cannot split the command: {problem}"),
                        node.span.clone(),
                    );
                    None
                }
            },
            NodeKind::Sequence(items) => items.iter().map(|item| self.text(item)).collect(),
            NodeKind::Mapping(_) => {
                self.expected(node, "a string or a list");
                None
            }
        }
    }

    fn environment(&mut self, node: &Node) {
        let pairs = self.key_values(node);
        if !pairs.is_empty() {
            self.draft.set("env", TomlValue::Table(pairs));
        }
    }

    fn env_file(&mut self, node: &Node) {
        let files: Vec<(&Node, String, bool)> = match &node.kind {
            NodeKind::Scalar { text, .. } => vec![(node, text.clone(), true)],
            NodeKind::Sequence(items) => items
                .iter()
                .filter_map(|item| match &item.kind {
                    NodeKind::Scalar { text, .. } => Some((item, text.clone(), true)),
                    NodeKind::Mapping(_) => {
                        let path = item.get("path").and_then(Node::scalar)?;
                        let required = item.get("required").and_then(Node::scalar) != Some("false");
                        Some((item, path.to_string(), required))
                    }
                    NodeKind::Sequence(_) => None,
                })
                .collect(),
            NodeKind::Mapping(_) => {
                self.expected(node, "a path or a list of paths");
                return;
            }
        };
        let mut comments = Vec::new();
        let mut chosen = None;
        for (item, path, required) in files {
            let exists = self.translation.context.source_dir.join(&path).is_file();
            if !required && !exists {
                comments.extend(self.partly(
                    item,
                    format!("`env_file` `{path}` is optional and missing, so it is left out (fleet requires its env_file)"),
                ));
            } else if chosen.is_none() {
                chosen = Some(path);
            } else {
                comments.extend(self.partly(
                    item,
                    format!("`env_file` `{path}` is not imported: fleet reads one env_file per service; merge it into the first, or copy its variables into `env`"),
                ));
            }
        }
        match chosen {
            Some(path) => {
                let path = self.translation.context.rebase(&path);
                self.draft
                    .set_with("env_file", TomlValue::string(path), comments);
            }
            None => self.draft.trailing.extend(comments),
        }
    }

    fn ports(&mut self, node: &Node) {
        let Some(items) = node.sequence() else {
            self.expected(node, "a list of ports");
            return;
        };
        let mut mappings = Vec::new();
        let mut comments = Vec::new();
        for item in items {
            let parsed = match &item.kind {
                NodeKind::Scalar { text, .. } => parse_port(text),
                NodeKind::Mapping(_) => long_port(item),
                NodeKind::Sequence(_) => Err("expected a port".to_string()),
            };
            match parsed {
                Ok(ports) => {
                    for port in ports {
                        match port.to_fleet(self.container) {
                            Ok(value) => mappings.push(value),
                            Err(problem) => comments.extend(self.partly(item, problem)),
                        }
                    }
                }
                Err(problem) => {
                    self.translation
                        .error(format!("invalid port: {problem}"), item.span.clone());
                }
            }
        }
        if mappings.is_empty() {
            self.draft.trailing.extend(comments);
        } else {
            self.draft
                .set_with("ports", TomlValue::Array(mappings), comments);
        }
    }

    fn volumes(&mut self, node: &Node) {
        let Some(items) = node.sequence() else {
            self.expected(node, "a list of volumes");
            return;
        };
        if !self.container {
            let comment = self.partly(
                node,
                "`volumes` is only for containers; a process sees this machine's files".to_string(),
            );
            self.draft.trailing.extend(comment);
            return;
        }
        let mut mounts = Vec::new();
        let mut comments = Vec::new();
        for item in items {
            match self.mount(item, self.root_volumes) {
                Ok(mount) => mounts.push(TomlValue::string(mount)),
                Err(problem) => comments.extend(self.partly(item, problem)),
            }
        }
        if mounts.is_empty() {
            self.draft.trailing.extend(comments);
        } else {
            self.draft
                .set_with("volumes", TomlValue::Array(mounts), comments);
        }
    }

    /// One mount as fleet writes it (`SOURCE:TARGET[:ro]`), or why it cannot be.
    fn mount(&self, item: &Node, root_volumes: Option<&Node>) -> Result<String, String> {
        let (kind, source, target, read_only) = match &item.kind {
            NodeKind::Scalar { text, .. } => {
                let parts: Vec<&str> = text.split(':').collect();
                let (source, target, options) = match parts.as_slice() {
                    [target] => ("", *target, ""),
                    [source, target] => (*source, *target, ""),
                    [source, target, options] => (*source, *target, *options),
                    _ => return Err(format!("volume `{text}` is not `SOURCE:TARGET[:MODE]`")),
                };
                let mut read_only = false;
                for option in options.split(',').filter(|option| !option.is_empty()) {
                    match option {
                        "ro" => read_only = true,
                        "rw" => {}
                        other => {
                            return Err(format!(
                                "volume `{text}`: the mount option `{other}` is not supported"
                            ))
                        }
                    }
                }
                let kind = if source.is_empty() {
                    "anonymous"
                } else if source.starts_with(['.', '/', '~']) {
                    "bind"
                } else {
                    "volume"
                };
                (
                    kind.to_string(),
                    source.to_string(),
                    target.to_string(),
                    read_only,
                )
            }
            NodeKind::Mapping(_) => {
                let field = |name: &str| {
                    item.get(name)
                        .and_then(Node::scalar)
                        .unwrap_or_default()
                        .to_string()
                };
                for (key, _) in item.mapping().unwrap_or_default() {
                    let key = key.scalar().unwrap_or_default();
                    if !matches!(
                        key,
                        "type" | "source" | "target" | "read_only" | "bind" | "consistency"
                    ) && !key.starts_with("x-")
                    {
                        return Err(format!("the volume option `{key}` is not supported"));
                    }
                }
                let kind = match field("type").as_str() {
                    "" => "volume".to_string(),
                    other => other.to_string(),
                };
                let kind = if kind == "volume" && field("source").is_empty() {
                    "anonymous".to_string()
                } else {
                    kind
                };
                (
                    kind,
                    field("source"),
                    field("target"),
                    field("read_only") == "true",
                )
            }
            NodeKind::Sequence(_) => return Err("a volume is a string or a mapping".to_string()),
        };
        if !target.starts_with('/') {
            return Err(format!("volume target `{target}` is not an absolute path"));
        }
        let source = match kind.as_str() {
            "bind" => {
                if let Some(home_relative) = source.strip_prefix("~/") {
                    let home = std::env::var("HOME")
                        .map_err(|_| "`~` in a volume needs HOME set".to_string())?;
                    format!("{home}/{home_relative}")
                } else {
                    let rebased = self.translation.context.rebase(&source);
                    if rebased.starts_with(['.', '/']) {
                        rebased
                    } else {
                        format!("./{rebased}")
                    }
                }
            }
            "volume" => volume_name(root_volumes, &source).to_string(),
            "anonymous" => {
                return Err(format!(
                    "the anonymous volume at `{target}` is not supported: give it a name (`NAME:{target}`)"
                ));
            }
            other => return Err(format!("`{other}` mounts are not supported")),
        };
        Ok(if read_only {
            format!("{source}:{target}:ro")
        } else {
            format!("{source}:{target}")
        })
    }

    fn depends_on(&mut self, node: &Node) {
        let mut edges: Vec<(String, &'static str, bool, &Node)> = Vec::new();
        let mut comments = Vec::new();
        match &node.kind {
            NodeKind::Sequence(items) => {
                for item in items {
                    if let Some(name) = self.text(item) {
                        edges.push((name, "started", false, item));
                    }
                }
            }
            NodeKind::Mapping(entries) => {
                for (key, options) in entries {
                    let name = key.scalar().unwrap_or_default().to_string();
                    let condition = match options.get("condition").and_then(Node::scalar) {
                        None | Some("service_started") => "started",
                        Some("service_healthy") => "healthy",
                        Some("service_completed_successfully") => "completed",
                        Some(other) => {
                            let span = options
                                .get("condition")
                                .map_or(key.span.clone(), |node| node.span.clone());
                            self.translation.error(format!("unknown dependency condition `{other}`"), span).help =
                                Some("expected `service_started`, `service_healthy` or `service_completed_successfully`".to_string());
                            continue;
                        }
                    };
                    let restart = options.get("restart").and_then(Node::scalar) == Some("true");
                    if options.get("required").and_then(Node::scalar) == Some("false") {
                        comments.extend(self.partly(key, format!("the dependency on `{name}` is optional in compose; fleet always waits for it")));
                    }
                    edges.push((name, condition, restart, key));
                }
            }
            NodeKind::Scalar { .. } => self.expected(node, "a list or a mapping"),
        }
        for (name, condition, _, place) in &edges {
            if !self.names.contains(name) {
                let suggestion = suggest(name, self.names.iter().map(String::as_str));
                let diagnostic = self.translation.error(
                    format!(
                        "service `{}` depends on unknown service `{name}`",
                        self.name
                    ),
                    place.span.clone(),
                );
                if let Some(suggestion) = suggestion {
                    diagnostic.help = Some(format!("did you mean `{suggestion}`?"));
                }
            }
            if *condition == "healthy" {
                self.healthy_dependencies.push(name.clone());
            }
        }
        if edges.is_empty() {
            self.draft.trailing.extend(comments);
            return;
        }
        let simple = edges
            .iter()
            .all(|(_, condition, restart, _)| *condition == "started" && !restart);
        let value = if simple {
            TomlValue::strings(edges.iter().map(|(name, ..)| name.clone()))
        } else {
            TomlValue::Table(
                edges
                    .iter()
                    .map(|(name, condition, restart, _)| {
                        let value = if *restart {
                            TomlValue::Table(vec![
                                ("condition".into(), TomlValue::string(*condition)),
                                ("restart".into(), TomlValue::Boolean(true)),
                            ])
                        } else {
                            TomlValue::string(*condition)
                        };
                        (name.clone(), value)
                    })
                    .collect(),
            )
        };
        self.draft.set_with("depends_on", value, comments);
    }

    fn healthcheck(&mut self, key: &Node, node: &Node) {
        if node.get("disable").and_then(Node::scalar) == Some("true") {
            return;
        }
        let test = match node.get("test") {
            // Without `test`, compose keeps the image's HEALTHCHECK and its settings.
            None => None,
            Some(test) => match &test.kind {
                NodeKind::Scalar { text, .. } => Some(TomlValue::string(text)),
                NodeKind::Sequence(items) => {
                    let words: Option<Vec<String>> = items
                        .iter()
                        .map(|item| item.scalar().map(str::to_string))
                        .collect();
                    match words.as_deref() {
                        Some([first, ..]) if first == "NONE" => return,
                        Some([first, script]) if first == "CMD-SHELL" => {
                            Some(TomlValue::string(script))
                        }
                        Some([first, rest @ ..]) if first == "CMD" && !rest.is_empty() => {
                            Some(TomlValue::strings(rest.iter().cloned()))
                        }
                        _ => {
                            self.translation.error(
                                "a healthcheck `test` list starts with `CMD`, `CMD-SHELL` or `NONE`",
                                test.span.clone(),
                            );
                            return;
                        }
                    }
                }
                NodeKind::Mapping(_) => {
                    self.expected(test, "a string or a list");
                    return;
                }
            },
        };
        let probe = match (test, self.container) {
            (Some(test), true) => ("docker", test),
            (None, true) => ("docker", TomlValue::Boolean(true)),
            (Some(test), false) => ("exec", test),
            (None, false) => {
                let comment = self.partly(
                    key,
                    "a healthcheck without `test` uses the image's; this service has no image"
                        .to_string(),
                );
                self.draft.trailing.extend(comment);
                return;
            }
        };
        let mut table = vec![(probe.0.to_string(), probe.1)];
        let mut comments = Vec::new();
        for (option, value) in node.mapping().unwrap_or_default() {
            let name = option.scalar().unwrap_or_default();
            match name {
                "test" | "disable" => {}
                "interval" | "timeout" | "start_period" => {
                    if let Some(duration) = self.duration(value) {
                        // 0 means "the default" to compose.
                        if !duration.is_zero() {
                            table.push((name.to_string(), TomlValue::duration(duration)));
                        }
                    }
                }
                "retries" => match value.scalar().and_then(|text| text.parse::<u32>().ok()) {
                    Some(0) => {}
                    Some(retries) => {
                        table.push(("retries".into(), TomlValue::Integer(retries.into())))
                    }
                    None => self.expected(value, "a number of retries"),
                },
                _ if name.starts_with("x-") => {}
                _ => comments
                    .extend(self.partly(option, format!("`healthcheck.{name}` is not supported"))),
            }
        }
        self.draft
            .set_with("health", TomlValue::Table(table), comments);
    }

    /// A compose duration (Go's syntax: `1m30s`, `500ms`, `1.5s`, `2h`).
    fn duration(&mut self, node: &Node) -> Option<Duration> {
        let text = node.scalar()?;
        let converted = text.replace("us", "µs");
        match parse_duration(text).or_else(|_| parse_go_micros(&converted)) {
            Ok(duration) => Some(duration),
            Err(()) => {
                self.translation
                    .error(format!("invalid duration `{text}`"), node.span.clone())
                    .help = Some("expected a duration like `30s`, `1m30s` or `500ms`".to_string());
                None
            }
        }
    }

    fn duration_key(&mut self, key: &str, node: &Node) {
        if let Some(duration) = self.duration(node) {
            self.draft.set(key, TomlValue::duration(duration));
        }
    }

    fn string_key(&mut self, key: &str, node: &Node) {
        if let Some(text) = self.text(node) {
            self.draft.set(key, TomlValue::string(text));
        }
    }

    fn restart(&mut self, node: &Node) {
        let Some(policy) = self.text(node) else {
            return;
        };
        let (fleet, max) = match policy.split_once(':') {
            Some(("on-failure", count)) => ("on-failure", count.parse::<u32>().ok()),
            _ => match policy.as_str() {
                "no" | "false" => ("never", None),
                "always" => ("always", None),
                "on-failure" => ("on-failure", None),
                "unless-stopped" => ("always", None),
                _ => {
                    self.translation
                        .error(
                            format!("unknown restart policy `{policy}`"),
                            node.span.clone(),
                        )
                        .help = Some(
                        "expected `no`, `always`, `on-failure[:N]` or `unless-stopped`".to_string(),
                    );
                    return;
                }
            },
        };
        self.draft.set("restart", TomlValue::string(fleet));
        if let Some(max) = max {
            let comments = self.partly(node, format!(
                "`on-failure:{max}` allows {max} restarts in all; fleet allows `max_restarts` within `restart_window` (60s)"
            ));
            self.draft
                .set_with("max_restarts", TomlValue::Integer(max.into()), comments);
        }
    }

    fn deploy(&mut self, node: &Node) {
        for (key, value) in node.mapping().unwrap_or_default() {
            let name = key.scalar().unwrap_or_default();
            match name {
                "replicas" => self.replicas(value),
                "restart_policy" => self.restart_policy(value),
                _ if name.starts_with("x-") => {}
                _ => {
                    let why = match name {
                        "resources" => "fleet sets no CPU or memory limits",
                        _ => "fleet runs on one machine, without Swarm's placement and updates",
                    };
                    let message = format!(
                        "service `{}`: `deploy.{name}` is not supported: {why}",
                        self.name
                    );
                    let comment =
                        self.translation
                            .warn(key.span.clone(), message, Some(whole(key, value)));
                    self.draft.trailing.extend(comment);
                }
            }
        }
    }

    fn init(&mut self, node: &Node) {
        match node.scalar() {
            Some("true") => self.draft.set("init", TomlValue::Boolean(true)),
            Some("false") => {}
            _ => self.expected(node, "true or false"),
        }
    }

    fn replicas(&mut self, node: &Node) {
        match node.scalar().and_then(|text| text.parse::<u32>().ok()) {
            Some(count) => self.draft.set("replicas", TomlValue::Integer(count.into())),
            None => self.expected(node, "a number of replicas"),
        }
    }

    fn restart_policy(&mut self, node: &Node) {
        let condition = node
            .get("condition")
            .and_then(Node::scalar)
            .unwrap_or("any");
        let policy = match condition {
            "none" => "never",
            "on-failure" => "on-failure",
            _ => "always",
        };
        self.draft.set("restart", TomlValue::string(policy));
        if let Some(attempts) = node
            .get("max_attempts")
            .and_then(Node::scalar)
            .and_then(|text| text.parse::<u32>().ok())
        {
            self.draft
                .set("max_restarts", TomlValue::Integer(attempts.into()));
        }
        if let Some(window) = node.get("window")
            && let Some(window) = self.duration(window)
            && !window.is_zero()
        {
            self.draft
                .set("restart_window", TomlValue::duration(window));
        }
        if let Some(delay) = node.get("delay")
            && let Some(delay) = self.duration(delay)
        {
            // fleet doubles the delay per crash up to `max`; compose waits the same each time.
            self.draft.set(
                "backoff",
                TomlValue::Table(vec![
                    ("initial".into(), TomlValue::duration(delay)),
                    ("max".into(), TomlValue::duration(delay)),
                ]),
            );
        }
    }

    fn profiles(&mut self, node: &Node) {
        let Some(items) = node.sequence() else {
            self.expected(node, "a list of profiles");
            return;
        };
        let names: Option<Vec<String>> = items.iter().map(|item| self.text(item)).collect();
        if let Some(names) = names.filter(|names| !names.is_empty()) {
            self.draft.set("profiles", TomlValue::strings(names));
        }
    }

    fn develop(&mut self, node: &Node) {
        let mut watch = Vec::new();
        let mut ignore = Vec::new();
        let mut comments = Vec::new();
        for (option, value) in node.mapping().unwrap_or_default() {
            if option.scalar() != Some("watch") {
                if !option.scalar().unwrap_or_default().starts_with("x-") {
                    comments.extend(self.partly(
                        option,
                        format!(
                            "`develop.{}` is not supported",
                            option.scalar().unwrap_or_default()
                        ),
                    ));
                }
                continue;
            }
            for rule in value.sequence().unwrap_or_default() {
                let action = rule
                    .get("action")
                    .and_then(Node::scalar)
                    .unwrap_or_default();
                let Some(path) = rule.get("path").and_then(Node::scalar) else {
                    self.translation
                        .error("a watch rule needs a `path`", rule.span.clone());
                    continue;
                };
                if !matches!(action, "rebuild" | "restart") {
                    comments.extend(self.partly(
                        rule,
                        format!("the watch action `{action}` is not supported: fleet rebuilds and replaces the service on a change (`rebuild`, `restart`); it does not copy files into a running container"),
                    ));
                    continue;
                }
                let glob = self.watch_glob(path);
                for pattern in rule
                    .get("ignore")
                    .and_then(Node::sequence)
                    .unwrap_or_default()
                {
                    if let Some(pattern) = pattern.scalar() {
                        let base = glob.trim_end_matches("/**");
                        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
                        ignore.push(format!("{base}/{pattern}"));
                        ignore.push(format!("{base}/{pattern}/**"));
                    }
                }
                watch.push(glob);
            }
        }
        if watch.is_empty() {
            self.draft.trailing.extend(comments);
            return;
        }
        self.draft
            .set_with("watch", TomlValue::strings(watch), comments);
        if !ignore.is_empty() {
            self.draft.set("ignore", TomlValue::strings(ignore));
        }
    }

    /// A watched path as a glob from the manifest's folder: a folder means everything
    /// under it.
    fn watch_glob(&self, path: &str) -> String {
        let is_file = self.translation.context.source_dir.join(path).is_file();
        let rebased = self.translation.context.rebase(path);
        let rebased = rebased
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if is_file || rebased.contains(['*', '?', '[']) {
            rebased
        } else if rebased.is_empty() || rebased == "." {
            "**".to_string()
        } else {
            format!("{rebased}/**")
        }
    }

    fn networks(&mut self, key: &Node, node: &Node) {
        let differs = match &node.kind {
            NodeKind::Sequence(items) => items.iter().any(|item| item.scalar() != Some("default")),
            NodeKind::Mapping(entries) => entries
                .iter()
                .any(|(name, options)| name.scalar() != Some("default") || !options.is_null()),
            NodeKind::Scalar { .. } => false,
        };
        if differs {
            self.unsupported(
                key,
                node,
                Some("fleet puts every container on one network, where it is reachable by its service name only (no aliases, no fixed addresses)"),
            );
        }
    }
}

/// compose's service names, which fleet's also are: letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Go's `us`/`µs` durations, which fleet's parser does not take: whole microseconds.
fn parse_go_micros(text: &str) -> Result<Duration, ()> {
    let micros = text.strip_suffix("µs").ok_or(())?;
    micros
        .parse::<u64>()
        .map(Duration::from_micros)
        .map_err(|_| ())
}

/// A published port as compose writes it: `[IP:][HOST:]CONTAINER[/PROTOCOL]`, each port
/// possibly a range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    host_ip: Option<String>,
    host: Option<u16>,
    /// A host port range for one container port: compose gives each replica one of
    /// them, and so does fleet.
    host_last: Option<u16>,
    container: u16,
    protocol: String,
}

impl Port {
    /// fleet's `ports` entry: `"HOST:CONTAINER"` or `"IP:HOST:CONTAINER"` for a
    /// container, the port number for a process.
    fn to_fleet(&self, container: bool) -> Result<TomlValue, String> {
        let written = self.describe();
        if self.protocol != "tcp" {
            return Err(format!("port `{written}`: fleet publishes TCP ports only"));
        }
        let Some(host) = self.host else {
            return Err(format!(
                "port `{written}` is published on a random host port; fleet needs a fixed one: `\"HOST:{}\"`",
                self.container
            ));
        };
        let host = match self.host_last {
            Some(last) if container => format!("{host}-{last}"),
            Some(_) => {
                return Err(format!(
                    "port `{written}`: a host port range is for a container's replicas"
                ))
            }
            None => host.to_string(),
        };
        if !container {
            if host != self.container.to_string() {
                return Err(format!("port `{written}`: a process listens on the host port itself, so HOST and CONTAINER must be equal"));
            }
            return Ok(TomlValue::Integer(self.container.into()));
        }
        Ok(TomlValue::string(match &self.host_ip {
            Some(ip) if ip.contains(':') => format!("[{ip}]:{host}:{}", self.container),
            Some(ip) => format!("{ip}:{host}:{}", self.container),
            None => format!("{host}:{}", self.container),
        }))
    }

    fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(ip) = &self.host_ip {
            text.push_str(ip);
            text.push(':');
        }
        if let Some(host) = self.host {
            text.push_str(&host.to_string());
            if let Some(last) = self.host_last {
                text.push_str(&format!("-{last}"));
            }
            text.push(':');
        } else if self.host_ip.is_some() {
            text.push(':');
        }
        text.push_str(&self.container.to_string());
        if self.protocol != "tcp" {
            text.push('/');
            text.push_str(&self.protocol);
        }
        text
    }
}

fn port_range(text: &str) -> Result<(u16, u16), String> {
    let number = |part: &str| {
        part.trim()
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| format!("`{part}` is not a port number"))
    };
    match text.split_once('-') {
        Some((first, last)) => {
            let (first, last) = (number(first)?, number(last)?);
            if last < first {
                return Err(format!("the range `{text}` runs backwards"));
            }
            Ok((first, last))
        }
        None => number(text).map(|port| (port, port)),
    }
}

/// The short syntax; a range becomes one port per number.
fn parse_port(text: &str) -> Result<Vec<Port>, String> {
    let (address, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let (host_ip, rest) = if let Some(bracketed) = address.strip_prefix('[') {
        let (ip, rest) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: unclosed `[`"))?;
        (
            Some(ip.to_string()),
            rest.strip_prefix(':')
                .ok_or_else(|| format!("`{text}`: expected `:` after the address"))?,
        )
    } else {
        match address.matches(':').count() {
            0 | 1 => (None, address),
            2 => {
                let (ip, rest) = address.split_once(':').unwrap_or_default();
                (Some(ip.to_string()), rest)
            }
            _ => return Err(format!("`{text}`: write an IPv6 address in brackets")),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, rest),
    };
    let container = port_range(container)?;
    let host = match host {
        Some("") | None => None,
        Some(host) => Some(port_range(host)?),
    };
    let count = container.1 - container.0 + 1;
    if let Some(host) = host
        && host.1 > host.0
        && count == 1
    {
        return Ok(vec![Port {
            host_ip,
            host: Some(host.0),
            host_last: Some(host.1),
            container: container.0,
            protocol: protocol.to_string(),
        }]);
    }
    if let Some(host) = host
        && host.1 - host.0 + 1 != count
    {
        return Err(format!(
            "`{text}`: the host and container ranges differ in length"
        ));
    }
    Ok((0..count)
        .map(|offset| Port {
            host_ip: host_ip.clone(),
            host: host.map(|host| host.0 + offset),
            host_last: None,
            container: container.0 + offset,
            protocol: protocol.to_string(),
        })
        .collect())
}

/// The long syntax: `target`, `published`, `host_ip`, `protocol`.
fn long_port(node: &Node) -> Result<Vec<Port>, String> {
    let field = |name: &str| {
        node.get(name)
            .and_then(Node::scalar)
            .filter(|text| !text.is_empty())
    };
    let target = field("target").ok_or("a port needs a `target`")?;
    let mut short = String::new();
    if let Some(ip) = field("host_ip") {
        if ip.contains(':') {
            short.push_str(&format!("[{ip}]:"));
        } else {
            short.push_str(&format!("{ip}:"));
        }
    }
    if let Some(published) = field("published") {
        short.push_str(&format!("{published}:"));
    } else if field("host_ip").is_some() {
        short.push(':');
    }
    short.push_str(target);
    if let Some(protocol) = field("protocol") {
        short.push_str(&format!("/{protocol}"));
    }
    parse_port(&short)
}

/// Splits a command into words as a POSIX shell would (quotes and backslashes), with
/// no expansion.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("an unclosed `'`".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("an unclosed `\"`".to_string()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("an unclosed `\"`".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => word.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_without_expanding() {
        assert_eq!(
            split_words(r#"sh -c "echo \"hi\" $HOME" 'a b' c\ d"#),
            Ok(vec![
                "sh".to_string(),
                "-c".into(),
                "echo \"hi\" $HOME".into(),
                "a b".into(),
                "c d".into()
            ])
        );
        assert_eq!(split_words("  "), Ok(vec![]));
        assert_eq!(split_words("''"), Ok(vec![String::new()]));
        assert!(split_words("echo 'open").is_err());
    }

    #[test]
    fn short_port_syntax() {
        let port = |ip: Option<&str>, host: Option<u16>, container: u16, protocol: &str| Port {
            host_ip: ip.map(str::to_string),
            host,
            host_last: None,
            container,
            protocol: protocol.to_string(),
        };
        assert_eq!(parse_port("80"), Ok(vec![port(None, None, 80, "tcp")]));
        assert_eq!(
            parse_port("8080:80"),
            Ok(vec![port(None, Some(8080), 80, "tcp")])
        );
        assert_eq!(
            parse_port("127.0.0.1:8080:80/udp"),
            Ok(vec![port(Some("127.0.0.1"), Some(8080), 80, "udp")])
        );
        assert_eq!(
            parse_port("[::1]:8080:80"),
            Ok(vec![port(Some("::1"), Some(8080), 80, "tcp")])
        );
        assert_eq!(
            parse_port("127.0.0.1::80"),
            Ok(vec![port(Some("127.0.0.1"), None, 80, "tcp")])
        );
        assert_eq!(
            parse_port("9000-9001:90-91"),
            Ok(vec![
                port(None, Some(9000), 90, "tcp"),
                port(None, Some(9001), 91, "tcp")
            ])
        );
        assert!(parse_port("9000-9002:90-91").is_err());
        let replicas = parse_port("8080-8082:80").expect("a range for replicas");
        assert_eq!(
            replicas[0].to_fleet(true),
            Ok(TomlValue::string("8080-8082:80"))
        );
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("::1:8080:80").is_err());
        assert_eq!(
            port(Some("::1"), Some(8080), 80, "tcp").to_fleet(true),
            Ok(TomlValue::string("[::1]:8080:80"))
        );
        assert_eq!(
            port(None, Some(5000), 5000, "tcp").to_fleet(false),
            Ok(TomlValue::Integer(5000))
        );
        assert!(port(None, Some(5000), 80, "tcp").to_fleet(false).is_err());
    }
}
