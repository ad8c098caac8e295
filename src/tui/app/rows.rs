//! The dashboard's rows: each client's report assembled by the core's one
//! assembly (`ClientReport::assemble`, as `walwarden check` does) from the
//! catalog, the config, the clock and what the background checks found,
//! then filtered and sorted. Pure.

use super::App;
use crate::checks::report::{ClientFacts, ClientReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Status,
    Name,
    LastArrival,
    RestorableTo,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Status => "status",
            SortKey::Name => "name",
            SortKey::LastArrival => "last arrival",
            SortKey::RestorableTo => "restorable to",
        }
    }

    pub(super) fn next(self) -> SortKey {
        match self {
            SortKey::Status => SortKey::Name,
            SortKey::Name => SortKey::LastArrival,
            SortKey::LastArrival => SortKey::RestorableTo,
            SortKey::RestorableTo => SortKey::Status,
        }
    }
}

impl App {
    /// Everything learnt about `client` beyond its folder.
    fn facts(&self, client: &str) -> ClientFacts<'_> {
        ClientFacts {
            quick: self.quick_findings.get(client),
            deep: self
                .jobs
                .get(client)
                .and_then(|j| j.deep.as_ref())
                .and_then(|d| d.as_ref().ok()),
            target: self.targets.get(client).and_then(|t| t.view.as_ref()),
            drills: &self.drills,
        }
    }

    /// Recomputes every report (ages move with the clock), then filters and
    /// sorts, keeping the selection on its client.
    pub(super) fn rebuild_rows(&mut self) {
        let Some(catalog) = &self.catalog else { return };
        let keep = self.selected_row().map(|r| r.name.clone());
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<ClientReport> = catalog
            .clients
            .iter()
            .map(|c| ClientReport::assemble(c, &self.config, self.now, self.facts(&c.name)))
            .filter(|r| needle.is_empty() || matches_filter(r, &needle))
            .collect();
        self.total_clients = catalog.clients.len();
        rows.sort_by(|a, b| {
            let order = match self.sort {
                SortKey::Status => b.status.cmp(&a.status).then_with(|| a.name.cmp(&b.name)),
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::LastArrival => a.wal.last_arrival.cmp(&b.wal.last_arrival),
                SortKey::RestorableTo => a.restorable_to.cmp(&b.restorable_to),
            };
            if self.sort_reversed {
                order.reverse()
            } else {
                order
            }
        });
        self.rows = rows;
        self.selected = keep
            .and_then(|name| self.rows.iter().position(|r| r.name == name))
            .unwrap_or(self.selected)
            .min(self.rows.len().saturating_sub(1));
        self.follow_selection();
    }

    /// Scrolls the list just enough that the selected row is in view, and
    /// never past the last row (so a click's row is the one drawn there).
    pub(super) fn follow_selection(&mut self) {
        let shown = (self.viewport.list_rows as usize).max(1);
        let last_start = self.rows.len().saturating_sub(shown);
        if self.selected < self.list_offset {
            self.list_offset = self.selected;
        } else if self.selected >= self.list_offset + shown {
            self.list_offset = self.selected + 1 - shown;
        }
        self.list_offset = self.list_offset.min(last_start);
    }
}

fn matches_filter(report: &ClientReport, needle: &str) -> bool {
    let status = format!("{:?}", report.status).to_lowercase();
    report.name.to_lowercase().contains(needle)
        || status.starts_with(needle)
        || report.status.label().to_lowercase().starts_with(needle)
        || report
            .problems
            .iter()
            .any(|p| p.code.as_str().contains(needle))
}
