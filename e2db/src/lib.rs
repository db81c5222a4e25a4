//! e2db: typed tables over the etcd API. Filled by its own milestone; the
//! crate exists so the workspace has its final shape.
