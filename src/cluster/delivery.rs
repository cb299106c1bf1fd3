//! Writing one shared frame to a channel's recipients, a large channel's on every core.
//!
//! Up to [`CHUNK`] recipients are written by the thread carrying out the step, as before. A
//! larger list is cut into chunks: the first is written by that thread, the others by a small
//! pool of delivery threads (one per core but one), and the call returns only once every chunk
//! is written. A step is therefore still done when its call returns: the line's next step (the
//! channel's next event), and a waiting publish's next event, start after every recipient has
//! this one, so nobody's order changes. Nothing is allocated per recipient; each chunk costs
//! one boxed job and a wake-up, and a chunk's thread holds no lock but each socket's own,
//! one write at a time.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};

use super::recipient::Recipient;
use crate::engine::Subscribers;
use crate::outbound::WireFrame;
use crate::protocol::SocketId;

/// The fewest recipients worth a chunk of their own: below it a wake-up costs more than the
/// writes it spreads (a write is a few microseconds; a wake-up about as much as one).
const CHUNK: usize = 512;

/// Writes `frame` to every recipient but `except`, spread over the delivery threads when
/// there are many; returns how many took it. Returns once every write is done.
pub fn deliver<R: Recipient>(
    recipients: &Subscribers<R>,
    frame: &WireFrame,
    except: Option<SocketId>,
) -> usize {
    let workers = DeliveryWorkers::get();
    let chunks = (recipients.len() / CHUNK).min(workers.count() + 1);
    if chunks <= 1 {
        return write_range(recipients, 0..recipients.len(), frame, except);
    }
    let size = recipients.len().div_ceil(chunks);
    let done = Arc::new(Done::new(chunks - 1));
    for (worker, start) in (1..chunks).map(|i| (i - 1, i * size)) {
        let range = start..(start + size).min(recipients.len());
        let (recipients, frame, done) = (recipients.clone(), frame.clone(), done.clone());
        workers.run(
            worker,
            Box::new(move || {
                let written = catch_unwind(AssertUnwindSafe(|| {
                    write_range(&recipients, range, &frame, except)
                }));
                // A panic counts as nothing written, and still ends the chunk.
                done.finish(written.unwrap_or(0));
            }),
        );
    }
    let own = write_range(recipients, 0..size, frame, except);
    own + done.wait()
}

fn write_range<R: Recipient>(
    recipients: &Subscribers<R>,
    range: Range<usize>,
    frame: &WireFrame,
    except: Option<SocketId>,
) -> usize {
    let mut delivered = 0;
    for (socket, recipient) in &recipients[range] {
        // A socket that is closing refuses the frame: it is not counted as delivered.
        if Some(*socket) != except && recipient.push(frame) {
            delivered += 1;
        }
    }
    delivered
}

/// The chunks of one call still being written elsewhere, and what they delivered.
struct Done {
    left: AtomicUsize,
    delivered: AtomicUsize,
    waiter: Thread,
}

impl Done {
    fn new(chunks: usize) -> Done {
        Done {
            left: AtomicUsize::new(chunks),
            delivered: AtomicUsize::new(0),
            waiter: thread::current(),
        }
    }

    fn finish(&self, delivered: usize) {
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waiter.unpark();
        }
    }

    /// Parks the calling thread until every chunk finished (the writes are non-blocking, so
    /// this is as long as the slowest chunk's writes).
    fn wait(&self) -> usize {
        while self.left.load(Ordering::Acquire) > 0 {
            thread::park();
        }
        self.delivered.load(Ordering::Relaxed)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The process's delivery threads, started on first use; each takes jobs from its own queue.
struct DeliveryWorkers {
    queues: Vec<Sender<Job>>,
}

impl DeliveryWorkers {
    fn get() -> &'static DeliveryWorkers {
        static WORKERS: OnceLock<DeliveryWorkers> = OnceLock::new();
        WORKERS.get_or_init(|| {
            let cores = thread::available_parallelism().map_or(1, |n| n.get());
            DeliveryWorkers::start(cores.saturating_sub(1))
        })
    }

    fn start(count: usize) -> DeliveryWorkers {
        let queues = (0..count)
            .filter_map(|i| {
                let (sender, jobs) = mpsc::channel::<Job>();
                let name = format!("herald-delivery-{i}");
                // A thread the system refuses leaves one chunk fewer, never a lost write.
                let started = thread::Builder::new().name(name).spawn(move || {
                    for job in jobs {
                        job();
                    }
                });
                started.ok().map(|_| sender)
            })
            .collect();
        DeliveryWorkers { queues }
    }

    fn count(&self) -> usize {
        self.queues.len()
    }

    /// Runs `job` on worker `index`, or here when that worker is gone.
    fn run(&self, index: usize, job: Job) {
        if let Err(mpsc::SendError(job)) = self.queues[index].send(job) {
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes::SocketError;
    use std::sync::Mutex as StdMutex;

    /// A recipient that records what it was sent, in order, and on which thread.
    #[derive(Clone, Default)]
    struct Recording(Arc<StdMutex<Vec<(WireFrame, thread::ThreadId)>>>);

    impl Recipient for Recording {
        fn push(&self, frame: &WireFrame) -> bool {
            let mut got = self.0.lock().unwrap();
            got.push((frame.clone(), thread::current().id()));
            true
        }

        fn close(&self, _: SocketError) {}
    }

    fn recipients(n: usize) -> Subscribers<Recording> {
        (0..n)
            .map(|i| (format!("{i}.1").parse().unwrap(), Recording::default()))
            .collect()
    }

    #[test]
    fn a_large_list_is_written_whole_once_each_and_in_order_per_recipient() {
        let list = recipients(CHUNK * 4 + 7);
        let except: SocketId = "3.1".parse().unwrap();
        let frames: Vec<WireFrame> = (0..20).map(|i| WireFrame::text(&i.to_string())).collect();
        for frame in &frames {
            assert_eq!(deliver(&list, frame, Some(except)), list.len() - 1);
        }
        for (socket, recording) in list.iter() {
            let got: Vec<WireFrame> = recording
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|g| g.0.clone())
                .collect();
            match *socket == except {
                true => assert!(got.is_empty()),
                false => assert_eq!(got, frames, "socket {socket}"),
            }
        }
        if DeliveryWorkers::get().count() > 0 {
            let threads: std::collections::HashSet<_> = list
                .iter()
                .flat_map(|(_, r)| r.0.lock().unwrap().iter().map(|g| g.1).collect::<Vec<_>>())
                .collect();
            assert!(threads.len() > 1, "spread over more than one thread");
        }
    }

    #[test]
    fn a_small_list_is_written_by_the_caller() {
        let list = recipients(CHUNK - 1);
        deliver(&list, &WireFrame::text("x"), None);
        let me = thread::current().id();
        assert!(list.iter().all(|(_, r)| r.0.lock().unwrap()[0].1 == me));
    }
}
