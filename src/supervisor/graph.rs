//! Pure dependency-graph queries over a validated manifest (which has no cycles and
//! no unknown dependencies): who depends on whom. The order in which services start
//! and stop is not computed here but decided as it happens, by `decide::reconcile`
//! (a service starts once its dependencies' conditions hold and stops once its
//! dependents are idle), so one place decides it.

use std::collections::{BTreeSet, HashMap};

use crate::manifest::Manifest;

#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// service -> the services it depends on.
    dependencies: HashMap<String, Vec<String>>,
    /// service -> the services that depend on it.
    dependents: HashMap<String, Vec<String>>,
}

impl Graph {
    pub fn new(manifest: &Manifest) -> Graph {
        let mut graph = Graph::default();
        for service in &manifest.services {
            graph.dependents.entry(service.name.clone()).or_default();
            let deps: Vec<String> = service
                .depends_on
                .iter()
                .map(|d| d.service.clone())
                .collect();
            for dep in &deps {
                graph
                    .dependents
                    .entry(dep.clone())
                    .or_default()
                    .push(service.name.clone());
            }
            graph.dependencies.insert(service.name.clone(), deps);
        }
        graph
    }

    pub fn dependencies(&self, service: &str) -> &[String] {
        self.dependencies
            .get(service)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn dependents(&self, service: &str) -> &[String] {
        self.dependents
            .get(service)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The named services plus everything they depend on, transitively.
    pub fn with_dependencies(&self, services: &[String]) -> BTreeSet<String> {
        let mut selected = BTreeSet::new();
        let mut stack: Vec<String> = services.to_vec();
        while let Some(service) = stack.pop() {
            if selected.insert(service.clone()) {
                stack.extend(self.dependencies(&service).iter().cloned());
            }
        }
        selected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        let mut graph = Graph::default();
        for (service, deps) in edges {
            graph.dependents.entry(service.to_string()).or_default();
            for dep in *deps {
                graph
                    .dependents
                    .entry(dep.to_string())
                    .or_default()
                    .push(service.to_string());
            }
            graph.dependencies.insert(
                service.to_string(),
                deps.iter().map(|d| d.to_string()).collect(),
            );
        }
        graph
    }

    #[test]
    fn dependents_and_dependencies_are_both_ways() {
        let graph = graph(&[
            ("gateway", &["users", "catalog"]),
            ("users", &["db"]),
            ("catalog", &[]),
            ("db", &[]),
        ]);
        assert_eq!(graph.dependents("db"), &["users".to_string()]);
        assert_eq!(
            graph.dependencies("gateway"),
            &["users".to_string(), "catalog".to_string()]
        );
        assert!(graph.dependents("gateway").is_empty());
    }

    #[test]
    fn selecting_a_service_pulls_in_its_dependencies() {
        let graph = graph(&[
            ("gateway", &["users"]),
            ("users", &["db"]),
            ("db", &[]),
            ("other", &[]),
        ]);
        let selected: Vec<String> = graph
            .with_dependencies(&["gateway".into()])
            .into_iter()
            .collect();
        assert_eq!(selected, vec!["db", "gateway", "users"]);
    }
}
