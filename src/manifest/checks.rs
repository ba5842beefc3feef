//! The checks that need all services at once: unknown and self dependencies, a
//! `healthy` wait on a service without a probe, dependency cycles, and a host port
//! declared twice.
//!
//! Owns [`ServiceSpans`], what the per-service walk (`validate`) remembers of where
//! each cross-checked value was written, so that an error points at the right place.
//! Runs after every service is resolved and only reads the resolved specs; must not
//! read the TOML itself nor change a spec.

use std::collections::HashMap;

use super::diagnostic::{locate, suggest, Diagnostic};
use super::raw::Span;
use super::validate::Checker;
use super::{DependencyCondition, ServiceSpec};

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
                if owner != index {
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
}
