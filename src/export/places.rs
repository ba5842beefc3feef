//! Where each key of `fleet.toml` was written: the file read again for spans, so the
//! export summary can name a key's line without the resolved manifest carrying spans.
//!
//! Owns nothing but that lookup. The file has passed validation by the time it is read
//! here, so a parse error only means no places (the keys are then reported at line 1).

use toml::de::{DeTable, DeValue};

use crate::manifest::diagnostic::locate;

/// Tables whose keys are reported one by one (`health.log`, `backoff.max`); any other
/// key counts as one, whatever its value.
const EXPANDED: &[&str] = &["health", "backoff", "export", "build"];

/// A key as written: its dotted path within its table and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub path: String,
    pub offset: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Places {
    pub source: String,
    /// `[project]` keys.
    pub project: Vec<Written>,
    /// Per service: its name's place and its keys.
    pub services: Vec<(String, usize, Vec<Written>)>,
}

impl Places {
    pub(crate) fn read(source: &str) -> Places {
        let mut places = Places {
            source: source.to_string(),
            ..Places::default()
        };
        let Ok(document) = DeTable::parse(source) else {
            return places;
        };
        let document = document.get_ref();
        if let Some(project) = document.get("project")
            && let DeValue::Table(table) = project.get_ref()
        {
            places.project = keys_of(table, "", false);
        }
        if let Some(services) = document.get("services")
            && let DeValue::Table(table) = services.get_ref()
        {
            let mut entries: Vec<_> = table.iter().collect();
            entries.sort_by_key(|(key, _)| key.span().start);
            for (key, value) in entries {
                if let DeValue::Table(service) = value.get_ref() {
                    places.services.push((
                        key.get_ref().to_string(),
                        key.span().start,
                        keys_of(service, "", true),
                    ));
                }
            }
        }
        places
    }

    /// The keys written for `service`.
    pub(crate) fn service_keys(&self, service: &str) -> &[Written] {
        self.services
            .iter()
            .find(|(name, _, _)| name == service)
            .map_or(&[], |(_, _, keys)| keys.as_slice())
    }

    /// Line and column of `key` in `service` (`None`: the `[project]` table): the key's
    /// own place, else the first key written under it, else the service's name.
    pub(crate) fn line_of(&self, service: Option<&str>, key: &str) -> (usize, usize) {
        let (keys, fallback) = match service {
            Some(service) => {
                let found = self.services.iter().find(|(name, _, _)| name == service);
                (
                    found.map_or(&[][..], |(_, _, keys)| keys.as_slice()),
                    found.map_or(0, |(_, offset, _)| *offset),
                )
            }
            None => (self.project.as_slice(), 0),
        };
        let offset = keys
            .iter()
            .find(|written| written.path == key)
            .or_else(|| keys.iter().find(|written| covers(key, &written.path)))
            .or_else(|| keys.iter().find(|written| covers(&written.path, key)))
            .map_or(fallback, |written| written.offset);
        let location = locate(&self.source, offset);
        (location.line, location.column)
    }
}

/// Whether `outer` is `inner` or a table holding it (`health` covers `health.log`).
pub(crate) fn covers(outer: &str, inner: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn keys_of(table: &DeTable<'_>, prefix: &str, expand: bool) -> Vec<Written> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut keys = Vec::new();
    for (key, value) in entries {
        let path = format!("{prefix}{}", key.get_ref());
        match value.get_ref() {
            DeValue::Table(inner) if expand && EXPANDED.contains(&key.get_ref().as_ref()) => {
                keys.extend(keys_of(inner, &format!("{path}."), false));
            }
            _ => keys.push(Written {
                path,
                offset: key.span().start,
            }),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_services_and_their_tables_have_lines() {
        let source = "[project]\nname = \"p\"\n\n[services.web]\nimage = \"x\"\nhealth = { http = \"http://127.0.0.1/\", interval = \"1s\" }\n\n[services.web.backoff]\nmax = \"1s\"\n";
        let places = Places::read(source);
        let paths: Vec<&str> = places
            .service_keys("web")
            .iter()
            .map(|written| written.path.as_str())
            .collect();
        assert_eq!(
            paths,
            ["image", "health.http", "health.interval", "backoff.max"]
        );
        assert_eq!(places.line_of(Some("web"), "health.interval"), (6, 40));
        assert_eq!(places.line_of(Some("web"), "health"), (6, 12));
        assert_eq!(places.line_of(Some("web"), "backoff.max"), (9, 1));
        assert_eq!(places.line_of(Some("web"), "watch"), (4, 11));
        assert_eq!(places.line_of(None, "name"), (2, 1));
        assert!(covers("health", "health.log"));
        assert!(!covers("health", "healthy"));
    }
}
