//! The kernel vhost-vsock transport of production hosts: each VM gets a guest context id (CID)
//! for `-device vhost-vsock-pci,guest-cid=N`, and one host listener on `AF_VSOCK` (any CID, the
//! guest service port) routes every connection to the VM that owns the peer's CID. A connection
//! from a CID no running VM owns is closed at once.
//!
//! (These machines have no `/dev/vhost-vsock`; the tests exercise the allocation and routing
//! here, and the same guest protocol over the hybrid transport end to end.)

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use guest::proto::{Task, TaskResultRequest};

use super::guest_server::{GuestHandler, serve_connection};

/// CIDs 0–2 are reserved (hypervisor, local, host).
pub const FIRST_GUEST_CID: u32 = 3;

/// Hands out guest CIDs, never two VMs the same one.
#[derive(Debug, Default)]
pub struct CidAllocator {
    used: BTreeSet<u32>,
}

impl CidAllocator {
    /// The lowest free CID.
    pub fn allocate(&mut self) -> Option<u32> {
        let mut cid = FIRST_GUEST_CID;
        for used in &self.used {
            if *used == cid {
                cid = cid.checked_add(1)?;
            } else if *used > cid {
                break;
            }
        }
        self.used.insert(cid);
        Some(cid)
    }

    pub fn release(&mut self, cid: u32) {
        self.used.remove(&cid);
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A [`GuestHandler`] behind a pointer, so handlers of different types share one routing table.
pub trait DynGuestHandler: Send + Sync + 'static {
    fn max_message_bytes_dyn(&self) -> usize;
    fn get_task_dyn<'a>(&'a self, vm: &'a str) -> BoxFuture<'a, Option<Task>>;
    fn submit_result_dyn<'a>(
        &'a self,
        vm: &'a str,
        result: TaskResultRequest,
    ) -> BoxFuture<'a, Result<bool, tonic::Status>>;
}

impl<T: GuestHandler> DynGuestHandler for T {
    fn max_message_bytes_dyn(&self) -> usize {
        self.max_message_bytes()
    }

    fn get_task_dyn<'a>(&'a self, vm: &'a str) -> BoxFuture<'a, Option<Task>> {
        Box::pin(self.get_task(vm))
    }

    fn submit_result_dyn<'a>(
        &'a self,
        vm: &'a str,
        result: TaskResultRequest,
    ) -> BoxFuture<'a, Result<bool, tonic::Status>> {
        Box::pin(self.submit_result(vm, result))
    }
}

/// A routed handler.
pub struct Routed(pub Arc<dyn DynGuestHandler>);

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routed")
    }
}

impl GuestHandler for Routed {
    fn max_message_bytes(&self) -> usize {
        self.0.max_message_bytes_dyn()
    }

    async fn get_task(&self, vm: &str) -> Option<Task> {
        self.0.get_task_dyn(vm).await
    }

    async fn submit_result(
        &self,
        vm: &str,
        result: TaskResultRequest,
    ) -> Result<bool, tonic::Status> {
        self.0.submit_result_dyn(vm, result).await
    }
}

/// The CIDs in use and the handler of each.
type Routes = (CidAllocator, HashMap<u32, Arc<dyn DynGuestHandler>>);

/// CIDs and the handlers of the VMs that own them.
#[derive(Clone, Default)]
pub struct KernelVsockHub {
    inner: Arc<Mutex<Routes>>,
}

impl std::fmt::Debug for KernelVsockHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelVsockHub")
    }
}

impl KernelVsockHub {
    /// Allocates a CID for a new VM and routes its connections to `handler`.
    pub fn register(&self, handler: Arc<dyn DynGuestHandler>) -> Option<u32> {
        let mut inner = self.inner.lock().ok()?;
        let cid = inner.0.allocate()?;
        inner.1.insert(cid, handler);
        Some(cid)
    }

    /// The VM with this CID ended: its CID is free again.
    pub fn unregister(&self, cid: u32) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.1.remove(&cid);
            inner.0.release(cid);
        }
    }

    pub fn route(&self, cid: u32) -> Option<Arc<dyn DynGuestHandler>> {
        self.inner.lock().ok()?.1.get(&cid).cloned()
    }

    /// Accepts guest connections on the host's vsock listener until it fails, serving each on
    /// its own task with the handler of the peer's CID.
    pub async fn serve(&self, listener: tokio_vsock::VsockListener) {
        // Connections at once per guest (a guest that opens more has the rest closed).
        let mut open: std::collections::HashMap<u32, Arc<tokio::sync::Semaphore>> =
            std::collections::HashMap::new();
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let cid = peer.cid();
            let Some(handler) = self.route(cid) else {
                open.remove(&cid);
                tracing::warn!(target: "gevulot", cid, "vsock connection from a CID no VM owns; closed");
                continue;
            };
            let permits = open.entry(cid).or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    super::guest_server::MAX_GUEST_CONNECTIONS,
                ))
            });
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(target: "gevulot", cid, "a guest opened too many connections; closed one");
                continue;
            };
            tokio::spawn(async move {
                let _permit = permit;
                let vm = format!("cid {cid}");
                if let Err(e) = serve_connection(stream, vm, Arc::new(Routed(handler))).await {
                    tracing::debug!(target: "gevulot", cid, error = %e, "guest connection ended with an error");
                }
            });
        }
    }

    /// Binds the host listener on `port` (any local CID).
    pub fn bind(port: u32) -> std::io::Result<tokio_vsock::VsockListener> {
        tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(
            tokio_vsock::VMADDR_CID_ANY,
            port,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cids_are_unique_and_reused_after_release() {
        let mut a = CidAllocator::default();
        assert_eq!(
            (a.allocate(), a.allocate(), a.allocate()),
            (Some(3), Some(4), Some(5))
        );
        a.release(4);
        assert_eq!(a.allocate(), Some(4), "the lowest free CID");
        assert_eq!(a.allocate(), Some(6));
    }

    struct Fixed(&'static str);

    impl GuestHandler for Fixed {
        async fn get_task(&self, _vm: &str) -> Option<Task> {
            Some(Task {
                tx_hash: self.0.into(),
                ..Task::default()
            })
        }

        async fn submit_result(
            &self,
            _vm: &str,
            _r: TaskResultRequest,
        ) -> Result<bool, tonic::Status> {
            Ok(false)
        }
    }

    #[tokio::test]
    async fn connections_route_by_peer_cid() {
        let hub = KernelVsockHub::default();
        let a = hub.register(Arc::new(Fixed("a"))).expect("cid");
        let b = hub.register(Arc::new(Fixed("b"))).expect("cid");
        assert_ne!(a, b);
        let task = hub
            .route(b)
            .expect("routed")
            .get_task_dyn("x")
            .await
            .expect("task");
        assert_eq!(task.tx_hash, "b");
        hub.unregister(b);
        assert!(
            hub.route(b).is_none(),
            "a CID of a VM that ended reaches nobody"
        );
        assert_eq!(
            hub.register(Arc::new(Fixed("c"))),
            Some(b),
            "and is handed out again"
        );
    }
}
