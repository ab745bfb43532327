//! Issuing disk requests from inside the node.

use crate::seam::{DiskOp, DiskReqId, Output};

/// Hands out disk request ids and queues the `Output::Disk` for the driver.
/// Parts of the node (the logs, the node itself) submit through it; the
/// node learns which part owns a request from the range of ids it issued.
pub struct DiskIo<'a> {
    next_req: &'a mut DiskReqId,
    out: &'a mut Vec<Output>,
}

impl<'a> DiskIo<'a> {
    pub fn new(next_req: &'a mut DiskReqId, out: &'a mut Vec<Output>) -> DiskIo<'a> {
        DiskIo { next_req, out }
    }

    /// Queue `op`; its completion arrives as `Input::DiskDone { req }` with the returned id.
    pub fn submit(&mut self, op: DiskOp) -> DiskReqId {
        let req = *self.next_req;
        *self.next_req += 1;
        self.out.push(Output::Disk { req, op });
        req
    }

    /// The id the next submission will get.
    pub fn next_id(&self) -> DiskReqId {
        *self.next_req
    }
}
