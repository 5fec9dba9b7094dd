//! EXPLAIN ANALYZE: what each operator of a run did (rows out, time,
//! peak reserved memory, bytes spilled, choices made at run time).
//!
//! Each operator of an analysed plan gets a [`Node`]. While an operator is
//! being built or is producing a batch, its node is this thread's current
//! one ([`enter`]/[`leave`]); a reservation or spill file made then belongs
//! to it for good, and reports its growth to it. That attributes memory and
//! spills without the operators knowing: the budget and the spill manager
//! ask [`current`]. A thread an operator starts (the sort's run writer)
//! takes its node along.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// What one operator did.
#[derive(Debug, Default, Clone)]
pub struct NodeStats {
    pub rows: u64,
    pub batches: u64,
    /// Time spent inside the operator's `next_batch`, its inputs' included.
    pub nanos: u64,
    pub reserved_bytes: usize,
    pub reserved_bytes_peak: usize,
    pub spill_bytes: u64,
    pub spill_files: u64,
    /// Choices the operator made as it ran (which input a join built).
    pub notes: Vec<String>,
}

/// The stats of every node of one analysed run.
#[derive(Debug, Default)]
pub struct Analysis {
    nodes: Mutex<Vec<NodeStats>>,
}

/// One operator's place in an [`Analysis`].
#[derive(Debug, Clone)]
pub struct Node {
    analysis: Arc<Analysis>,
    id: usize,
}

thread_local! {
    static CURRENT: RefCell<Option<Node>> = const { RefCell::new(None) };
}

/// The node this thread is working for, if a run is being analysed.
pub fn current() -> Option<Node> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Make `node` current; returns the node to restore with [`leave`].
pub fn enter(node: Option<Node>) -> Option<Node> {
    CURRENT.with(|c| c.replace(node))
}

pub fn leave(previous: Option<Node>) {
    CURRENT.with(|c| *c.borrow_mut() = previous);
}

/// Record on the current node, if any, a choice its operator made at run
/// time, for EXPLAIN ANALYZE to show.
pub fn note(text: &str) {
    if let Some(node) = current() {
        // Once: parallel workers of one operator each say the same thing.
        node.update(|s| {
            if !s.notes.iter().any(|n| n == text) {
                s.notes.push(text.to_string())
            }
        });
    }
}

impl Analysis {
    pub fn new() -> Arc<Analysis> {
        Arc::new(Analysis::default())
    }

    pub fn add_node(self: &Arc<Self>) -> Node {
        let mut nodes = self.lock();
        nodes.push(NodeStats::default());
        Node {
            analysis: self.clone(),
            id: nodes.len() - 1,
        }
    }

    /// Every node's stats, in the order the nodes were added.
    pub fn stats_all(&self) -> Vec<NodeStats> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NodeStats>> {
        // Counters only: a panic elsewhere cannot leave them torn.
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Node {
    fn update(&self, f: impl FnOnce(&mut NodeStats)) {
        f(&mut self.analysis.lock()[self.id]);
    }

    pub fn reserved(&self, grown: usize, shrunk: usize) {
        self.update(|s| {
            s.reserved_bytes = (s.reserved_bytes + grown).saturating_sub(shrunk);
            s.reserved_bytes_peak = s.reserved_bytes_peak.max(s.reserved_bytes);
        });
    }

    pub fn spilled(&self, bytes: u64, files: u64) {
        self.update(|s| {
            s.spill_bytes += bytes;
            s.spill_files += files;
        });
    }

    pub fn produced(&self, rows: u64, nanos: u64) {
        self.update(|s| {
            s.rows += rows;
            s.batches += u64::from(rows > 0);
            s.nanos += nanos;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_made_by_several_workers_shows_once() {
        let analysis = Analysis::new();
        let node = analysis.add_node();
        let previous = enter(Some(node.clone()));
        note("rows passed through");
        let worker = std::thread::spawn(move || {
            enter(Some(node));
            note("rows passed through");
            note("built=left");
        });
        worker.join().unwrap();
        leave(previous);
        assert_eq!(
            analysis.stats_all()[0].notes,
            ["rows passed through", "built=left"]
        );
    }
}
