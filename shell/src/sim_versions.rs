//! The e2d version each simulated machine runs (`--cfg madsim` only): the
//! simulator upgrades machines one at a time by giving them a newer
//! version and restarting them, as an operator rolls a new binary out.
//! Each simulated run is on one thread, so the versions are per thread.

use std::cell::RefCell;
use std::collections::BTreeMap;

use e2d_core::version::Version;
use madsim::task::NodeId;

thread_local! {
    static VERSIONS: RefCell<BTreeMap<NodeId, Version>> = const { RefCell::new(BTreeMap::new()) };
}

/// From now on, the machine `node` runs e2d `version`.
pub fn set(node: NodeId, version: Version) {
    VERSIONS.with(|v| v.borrow_mut().insert(node, version));
}

/// Forgets every machine's version (a new run).
pub fn clear() {
    VERSIONS.with(|v| v.borrow_mut().clear());
}

/// The version the simulator gave the machine this task runs on, if any.
pub fn of_this_machine() -> Option<Version> {
    let node = madsim::plugin::node();
    VERSIONS.with(|v| v.borrow().get(&node).copied())
}
