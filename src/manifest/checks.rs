//! The checks that need all services at once: unknown and self dependencies, a
//! `healthy` wait on a service without a probe, dependency cycles, and a host port
//! declared twice.
//!
//! Owns [`ServiceSpans`], what the per-service walk (`validate`) remembers of where
//! each cross-checked value was written, so that an error points at the right place.
//! Runs after every service is resolved and only reads the resolved specs; must not
//! read the TOML itself nor change a spec.

use std::collections::{HashMap, HashSet};

use super::diagnostic::{locate, suggest, Diagnostic};
use super::raw::Span;
use super::validate::Checker;
use super::{Activation, DependencyCondition, ServiceSpec};

/// Where each service's cross-checked values were written.
pub(super) struct ServiceSpans {
    pub(super) name: Span,
    /// Each dependency's name, parallel to `ServiceSpec::depends_on`.
    pub(super) dependencies: Vec<Span>,
    /// Host ports, with the span that declared each, in source order.
    pub(super) ports: Vec<(u16, Span, PortSource)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PortSource {
    Ports,
    Socket,
    /// The port replica N (1-based, 2 or more) takes: a declared port plus N - 1.
    Replica(u32),
}

impl Checker<'_> {
    /// Unknown and self dependencies, a `healthy` wait on a service without a probe,
    /// and cycles (one per strongly connected group, named from the group's first
    /// declared service).
    pub(super) fn check_dependencies(&mut self, services: &[ServiceSpec], spans: &[ServiceSpans]) {
        let index_of: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(index, service)| (service.name.as_str(), index))
            .collect();
        let names: Vec<&str> = services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        // edges[i] = (j, span of the name of j in i's depends_on)
        let mut edges: Vec<Vec<(usize, Span)>> = vec![Vec::new(); services.len()];
        for (index, service) in services.iter().enumerate() {
            for (dependency, span) in service.depends_on.iter().zip(&spans[index].dependencies) {
                let Some(&target) = index_of.get(dependency.service.as_str()) else {
                    let diagnostic = Diagnostic::new(
                        format!(
                            "service `{}` depends on unknown service `{}`",
                            service.name, dependency.service
                        ),
                        span.clone(),
                    )
                    // A service depending on itself is never the fix.
                    .with_suggestion(suggest(
                        &dependency.service,
                        names.iter().copied().filter(|name| *name != service.name),
                    ));
                    self.push(diagnostic);
                    continue;
                };
                if target == index {
                    self.error(
                        format!("service `{}` depends on itself", service.name),
                        span.clone(),
                    );
                    continue;
                }
                if dependency.condition == DependencyCondition::Healthy
                    && services[target].health.is_none()
                {
                    self.error(
                        format!("service `{}` waits for `{}` to be healthy, but `{}` has no health check", service.name, dependency.service, dependency.service),
                        span.clone(),
                    )
                    .help = Some(format!(
                        "add `health` to service `{}`, or wait for it to be \"started\"",
                        dependency.service
                    ));
                }
                edges[index].push((target, span.clone()));
            }
        }
        for component in strongly_connected(&edges) {
            if component.len() < 2 {
                continue;
            }
            let Some(&first) = component.iter().min() else {
                continue;
            };
            let Some(cycle) = shortest_cycle(&edges, &component, first) else {
                continue;
            };
            let mut path: Vec<&str> = cycle.iter().map(|&index| names[index]).collect();
            path.push(names[first]);
            let second = cycle.get(1).copied().unwrap_or(first);
            let span = edges[first]
                .iter()
                .find(|(target, _)| *target == second)
                .map_or(spans[first].name.clone(), |(_, span)| span.clone());
            self.error(format!("dependency cycle: {}", path.join(" -> ")), span).help = Some(
                "a service starts after its dependencies, so a cycle can never start; remove one of these dependencies"
                    .to_string(),
            );
        }
    }

    /// A host port declared twice: by two services, twice in one service, or as both
    /// a service's `socket` and one of its `ports` (fleet holds the socket's port
    /// itself, so the free-port check before a start would always fail).
    /// A service that runs under `activation` must not depend on one that does not:
    /// the error names the profile that would enable it.
    pub(super) fn check_activation(
        &mut self,
        services: &[ServiceSpec],
        spans: &[ServiceSpans],
        activation: &Activation,
    ) {
        let selected = selection(services, activation);
        for (index, service) in services.iter().enumerate() {
            if !selected.contains(&service.name) {
                continue;
            }
            for (dependency, span) in service.depends_on.iter().zip(&spans[index].dependencies) {
                let Some(target) = services.iter().find(|spec| spec.name == dependency.service)
                else {
                    continue;
                };
                if activation.enables(target) {
                    continue;
                }
                let profiles: Vec<String> = target
                    .profiles
                    .iter()
                    .map(|profile| format!("`{profile}`"))
                    .collect();
                let which = match profiles.as_slice() {
                    [only] => format!("profile {only}"),
                    _ => format!("one of the profiles {}", profiles.join(", ")),
                };
                let first = target.profiles.first().cloned().unwrap_or_default();
                self.error(
                    format!(
                        "`{}` depends on `{}`, which runs only with {which}",
                        service.name, target.name
                    ),
                    span.clone(),
                )
                .help = Some(format!(
                    "enable it: `--profile {first}` (or FLEET_PROFILES={first}), or name `{}` on the command line",
                    target.name
                ));
            }
        }
    }

    pub(super) fn check_ports(&mut self, services: &[ServiceSpec], spans: &[ServiceSpans]) {
        let mut first_declared: HashMap<u16, (usize, Span, PortSource)> = HashMap::new();
        for (index, service) in services.iter().enumerate() {
            for (port, span, source) in &spans[index].ports {
                let Some((owner, first_span, first_source)) = first_declared.get(port).cloned()
                else {
                    first_declared.insert(*port, (index, span.clone(), *source));
                    continue;
                };
                let first_line = locate(self.source, first_span.start).line;
                let replica_note = [first_source, *source].into_iter().find_map(|source| match source {
                    PortSource::Replica(replica) => Some(format!(
                        "with `replicas = {}`, replica {replica} of `{}` listens on each port plus {}",
                        services[if source == first_source { owner } else { index }].replicas,
                        services[if source == first_source { owner } else { index }].name,
                        replica - 1
                    )),
                    _ => None,
                });
                if let Some(note) = replica_note {
                    let owner_name = &services[owner].name;
                    self.error(
                        format!(
                            "port {port} is taken twice: by `{owner_name}` and by `{}`",
                            service.name
                        ),
                        span.clone(),
                    )
                    .help = Some(format!("{note}; the first is on line {first_line}"));
                } else if owner != index {
                    let owner_name = &services[owner].name;
                    self.error(
                        format!(
                            "port {port} is declared by both `{owner_name}` and `{}`",
                            service.name
                        ),
                        span.clone(),
                    )
                    .label = Some(format!(
                        "`{owner_name}` declared it first, on line {first_line}"
                    ));
                } else if first_source != *source {
                    self.error(
                        format!(
                            "port {port} is both the `socket` and in `ports` of service `{}`",
                            service.name
                        ),
                        span.clone(),
                    )
                    .help = Some(
                        "the socket already reserves the port; remove it from `ports`".to_string(),
                    );
                } else {
                    self.error(
                        format!(
                            "port {port} is declared twice in service `{}`",
                            service.name
                        ),
                        span.clone(),
                    )
                    .label = Some(format!("first declared on line {first_line}"));
                }
            }
        }
    }
}

/// The services `activation` runs, in declaration order: the named ones and their
/// dependencies, or (none named) every enabled service.
pub(super) fn selection(services: &[ServiceSpec], activation: &Activation) -> Vec<String> {
    if activation.services.is_empty() {
        return services
            .iter()
            .filter(|spec| activation.enables(spec))
            .map(|spec| spec.name.clone())
            .collect();
    }
    let mut wanted: HashSet<&str> = HashSet::new();
    let mut queue: Vec<&str> = activation.services.iter().map(String::as_str).collect();
    while let Some(name) = queue.pop() {
        if !wanted.insert(name) {
            continue;
        }
        if let Some(spec) = services.iter().find(|spec| spec.name == name) {
            queue.extend(
                spec.depends_on
                    .iter()
                    .map(|dependency| dependency.service.as_str()),
            );
        }
    }
    services
        .iter()
        .filter(|spec| wanted.contains(spec.name.as_str()))
        .map(|spec| spec.name.clone())
        .collect()
}

/// Tarjan's algorithm; components in no particular order, members as indices.
fn strongly_connected(edges: &[Vec<(usize, Span)>]) -> Vec<Vec<usize>> {
    struct State {
        next_index: usize,
        index: Vec<Option<usize>>,
        lowlink: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        components: Vec<Vec<usize>>,
    }
    fn visit(node: usize, edges: &[Vec<(usize, Span)>], state: &mut State) {
        state.index[node] = Some(state.next_index);
        state.lowlink[node] = state.next_index;
        state.next_index += 1;
        state.stack.push(node);
        state.on_stack[node] = true;
        for (target, _) in &edges[node] {
            match state.index[*target] {
                None => {
                    visit(*target, edges, state);
                    state.lowlink[node] = state.lowlink[node].min(state.lowlink[*target]);
                }
                Some(target_index) if state.on_stack[*target] => {
                    state.lowlink[node] = state.lowlink[node].min(target_index);
                }
                Some(_) => {}
            }
        }
        if Some(state.lowlink[node]) == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            state.components.push(component);
        }
    }
    let count = edges.len();
    let mut state = State {
        next_index: 0,
        index: vec![None; count],
        lowlink: vec![0; count],
        on_stack: vec![false; count],
        stack: Vec::new(),
        components: Vec::new(),
    };
    for node in 0..count {
        if state.index[node].is_none() {
            visit(node, edges, &mut state);
        }
    }
    state.components
}

/// The shortest path `start -> ... -> start` inside `component` (breadth first, so
/// the named cycle is as short as the graph allows), without the final `start`.
fn shortest_cycle(
    edges: &[Vec<(usize, Span)>],
    component: &[usize],
    start: usize,
) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for (target, _) in &edges[node] {
            if !component.contains(target) {
                continue;
            }
            if *target == start {
                let mut path = vec![node];
                let mut current = node;
                while current != start {
                    current = *parent.get(&current)?;
                    path.push(current);
                }
                path.reverse();
                return Some(path);
            }
            if !parent.contains_key(target) {
                parent.insert(*target, node);
                queue.push_back(*target);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::manifest::test_support::check;

    #[test]
    fn unknown_dependency_suggests_a_service() {
        check(
            "[services.db]\ncommand = \"db\"\n\n[services.users]\ncommand = \"u\"\ndepends_on = [\"dbb\"]\n",
            r#"
error: service `users` depends on unknown service `dbb`
 --> fleet.toml:6:15
  |
6 | depends_on = ["dbb"]
  |               ^^^^^
  |
  = help: did you mean `db`?

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn dependency_cycle_is_named_from_its_first_service() {
        check(
            r#"
[services.c]
command = "c"
depends_on = { a = "started" }

[services.a]
command = "a"
depends_on = ["b"]

[services.b]
command = "b"
depends_on = ["c"]
"#,
            r#"
error: dependency cycle: c -> a -> b -> c
 --> fleet.toml:4:16
  |
4 | depends_on = { a = "started" }
  |                ^
  |
  = help: a service starts after its dependencies, so a cycle can never start; remove one of these dependencies

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn dependency_cycle_a_b_c() {
        let source =
            "[services.a]\ncommand = \"a\"\ndepends_on = [\"b\"]\n[services.b]\ncommand = \"b\"\n\
                      depends_on = [\"c\"]\n[services.c]\ncommand = \"c\"\ndepends_on = [\"a\"]\n";
        check(
            source,
            r#"
error: dependency cycle: a -> b -> c -> a
 --> fleet.toml:3:15
  |
3 | depends_on = ["b"]
  |               ^^^
  |
  = help: a service starts after its dependencies, so a cycle can never start; remove one of these dependencies

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn service_depending_on_itself() {
        check(
            "[services.a]\ncommand = \"a\"\ndepends_on = [\"a\"]\n",
            r#"
error: service `a` depends on itself
 --> fleet.toml:3:15
  |
3 | depends_on = ["a"]
  |               ^^^

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn port_declared_by_two_services() {
        check(
            "[services.users]\ncommand = \"u\"\nports = [7001]\n\n[services.orders]\ncommand = \"o\"\nports = [7002, 7001]\n",
            r#"
error: port 7001 is declared by both `users` and `orders`
 --> fleet.toml:7:16
  |
7 | ports = [7002, 7001]
  |                ^^^^ `users` declared it first, on line 3

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn socket_counts_as_a_port_and_clashes_with_a_container_port() {
        check(
            "[services.web]\ncommand = \"w\"\nsocket = \"127.0.0.1:8080\"\nports = [8080]\n\n\
             [services.proxy]\nimage = \"nginx\"\nports = [\"8080:80\"]\n",
            r#"
error: port 8080 is both the `socket` and in `ports` of service `web`
 --> fleet.toml:4:10
  |
4 | ports = [8080]
  |          ^^^^
  |
  = help: the socket already reserves the port; remove it from `ports`

error: port 8080 is declared by both `web` and `proxy`
 --> fleet.toml:8:10
  |
8 | ports = ["8080:80"]
  |          ^^^^^^^^^ `web` declared it first, on line 3

error: could not load fleet.toml: 2 errors"#,
        );
    }

    #[test]
    fn dependency_problems() {
        let source = r#"[services.db]
command = "db"
[services.api]
command = "api"
depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
"#;
        check(
            source,
            r#"
error: service `api` waits for `db` to be healthy, but `db` has no health check
 --> fleet.toml:5:16
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                ^^
  |
  = help: add `health` to service `db`, or wait for it to be "started"

error: service `api` depends on unknown service `cache`
 --> fleet.toml:5:32
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                                ^^^^^

error: unknown dependency condition `helthy`
 --> fleet.toml:5:54
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                                                      ^^^^^^^^
  |
  = help: did you mean `healthy`?

error: unknown key `retry` in dependency `cache` of service `api`
 --> fleet.toml:5:64
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                                                                ^^^^^
  |
  = help: expected `condition` or `restart`

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn replicas_take_consecutive_ports_and_clash_like_any_port() {
        check(
            "[services.web]\ncommand = \"w\"\nports = [8080]\nreplicas = 3\n\n[services.admin]\ncommand = \"a\"\nports = [8082]\n",
            r#"
error: port 8082 is taken twice: by `web` and by `admin`
 --> fleet.toml:8:10
  |
8 | ports = [8082]
  |          ^^^^
  |
  = help: with `replicas = 3`, replica 3 of `web` listens on each port plus 2; the first is on line 3

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn replica_counts_and_port_ranges_are_checked() {
        check(
            "[services.web]\nimage = \"w\"\nports = [\"8080-8081:80\"]\nreplicas = 3\n\n[services.many]\ncommand = \"m\"\nreplicas = 1001\n\n[services.high]\ncommand = \"h\"\nports = [65535]\nreplicas = 2\n",
            r#"
error: port range 8080-8081 has 2 ports for 3 replicas of `web`
 --> fleet.toml:3:10
  |
3 | ports = ["8080-8081:80"]
  |          ^^^^^^^^^^^^^^
  |
  = help: a host port range gives each replica one port: make its length the `replicas` count

error: 1001 replicas is more than the 1000 fleet runs of one service
 --> fleet.toml:8:12
  |
8 | replicas = 1001
  |            ^^^^
  |
  = help: `replicas` is 0 to 1000

error: with 2 replicas, port 65535 runs past 65535
  --> fleet.toml:12:10
   |
12 | ports = [65535]
   |          ^^^^^
   |
   = help: replica N listens on the port plus N - 1: pick a lower port

error: could not load fleet.toml: 3 errors"#,
        );
    }

    #[test]
    fn replica_specs_move_ports_and_probes_but_share_the_socket() {
        let manifest = crate::manifest::test_support::parse_ok(
            "[services.api]\ncommand = \"a\"\nports = [7001]\nreplicas = 2\nhealth = { http = \"http://127.0.0.1:7001/health\" }\n\n[services.web]\ncommand = \"w\"\nsocket = 8080\nreplicas = 3\nhealth = { tcp = 8080 }\n\n[services.box]\nimage = \"b\"\nports = [\"9000-9001:80\"]\nreplicas = 2\n",
        );
        let api = manifest.service("api").expect("api");
        let second = api.replica(1);
        assert_eq!(second.ports, [7002]);
        let Some(crate::manifest::Probe::Http { target, .. }) =
            second.health.as_ref().map(|health| &health.probe)
        else {
            panic!("an http probe");
        };
        assert_eq!(target.url, "http://127.0.0.1:7002/health");
        assert_eq!(target.host_header, "127.0.0.1:7002");
        let web = manifest.service("web").expect("web");
        assert_eq!(web.replica(2).listening_ports(), [8080]);
        assert_eq!(web.replica(2).health, web.health);
        let boxed = manifest.service("box").expect("box");
        assert_eq!(boxed.replica_limit(), 2);
        let crate::manifest::ServiceKind::Container(container) = &boxed.replica(1).kind else {
            panic!("a container");
        };
        assert_eq!(container.ports[0].host, 9001);
        assert_eq!(api.replica_limit(), 1000);
    }

    #[test]
    fn replica_like_service_names_are_refused() {
        check(
            "[services.\"web.2\"]\ncommand = \"w\"\n",
            r#"
error: service name `web.2` ends like a replica's name
 --> fleet.toml:1:11
  |
1 | [services."web.2"]
  |           ^^^^^^^
  |
  = help: `NAME.2` names replica 2 of service `NAME`: rename it, like `web-2`

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn profiles_select_services_and_a_dependency_must_be_enabled() {
        use crate::manifest::Activation;
        let source = "[services.db]\ncommand = \"d\"\n\n[services.mail]\ncommand = \"m\"\nprofiles = [\"debug\"]\n\n[services.seed]\ncommand = \"s\"\nprofiles = [\"tools\", \"debug\"]\ndepends_on = [\"db\"]\n\n[services.api]\ncommand = \"a\"\ndepends_on = [\"db\", \"mail\"]\nprofiles = [\"full\"]\n";
        let manifest = crate::manifest::test_support::parse_ok(source);
        let none = Activation::default();
        assert_eq!(manifest.selection(&none), ["db"]);
        let debug = Activation::new(&[], Some("debug"), &[]);
        assert_eq!(manifest.selection(&debug), ["db", "mail", "seed"]);
        let named = Activation::new(&[], None, &["seed".to_string()]);
        assert_eq!(manifest.selection(&named), ["db", "seed"]);
        assert_eq!(manifest.profiles(), ["debug", "tools", "full"]);
        let unknown = Activation::new(&["nope".to_string()], None, &[]);
        let problem = manifest
            .check_activation(&unknown)
            .expect_err("unknown profile");
        assert!(problem.contains("unknown profile `nope`"), "{problem}");
        assert!(
            problem.contains("declared: debug, tools, full"),
            "{problem}"
        );

        let full = Activation::new(&["full".to_string()], None, &[]);
        let err = crate::manifest::parse_with(std::path::Path::new("fleet.toml"), source, &full)
            .expect_err("mail is not enabled");
        assert_eq!(
            err.render(false),
            r#"error: `api` depends on `mail`, which runs only with profile `debug`
  --> fleet.toml:15:21
   |
15 | depends_on = ["db", "mail"]
   |                     ^^^^^^
   |
   = help: enable it: `--profile debug` (or FLEET_PROFILES=debug), or name `mail` on the command line

error: could not load fleet.toml: 1 error"#
        );
        let both = Activation::new(&["full".to_string()], Some("debug"), &[]);
        assert!(
            crate::manifest::parse_with(std::path::Path::new("fleet.toml"), source, &both).is_ok()
        );
    }
}
