//! Pure dependency-graph queries over a validated manifest (which has no cycles and
//! no unknown dependencies): start order, stop order, who depends on whom.

use std::collections::{BTreeSet, HashMap};

use crate::manifest::Manifest;

#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// service -> the services it depends on.
    dependencies: HashMap<String, Vec<String>>,
    /// service -> the services that depend on it.
    dependents: HashMap<String, Vec<String>>,
    /// Declaration order, for stable output.
    order: Vec<String>,
}

impl Graph {
    pub fn new(manifest: &Manifest) -> Graph {
        let mut graph = Graph::default();
        for service in &manifest.services {
            graph.order.push(service.name.clone());
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

    /// Dependencies before dependents; ties in declaration order.
    pub fn start_order(&self) -> Vec<String> {
        let mut placed = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.order.len() {
            let before = order.len();
            for service in &self.order {
                if !placed.contains(service)
                    && self
                        .dependencies(service)
                        .iter()
                        .all(|d| placed.contains(d))
                {
                    placed.insert(service.clone());
                    order.push(service.clone());
                }
            }
            if order.len() == before {
                // A cycle; validation rejects those, so this only guards the loop.
                break;
            }
        }
        order
    }

    /// Dependents before their dependencies.
    pub fn stop_order(&self) -> Vec<String> {
        let mut order = self.start_order();
        order.reverse();
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        let mut graph = Graph::default();
        for (service, deps) in edges {
            graph.order.push(service.to_string());
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
    fn dependencies_start_first_and_stop_last() {
        let graph = graph(&[
            ("gateway", &["users", "catalog"]),
            ("users", &["db"]),
            ("catalog", &[]),
            ("db", &[]),
        ]);
        assert_eq!(
            graph.start_order(),
            vec!["catalog", "db", "users", "gateway"]
        );
        assert_eq!(
            graph.stop_order(),
            vec!["gateway", "users", "db", "catalog"]
        );
        assert_eq!(graph.dependents("db"), &["users".to_string()]);
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
