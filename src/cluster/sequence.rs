//! The ordered path of every channel: steps are put in line while the channel is locked and
//! carried out after the lock is released, in that order.
//!
//! Each app has a fixed set of lines; a channel always maps to the same one, so its steps keep
//! the order its lock gave them, whichever thread carries them out. Whoever puts a step in an
//! idle line carries out everything in it (a publisher, a socket task); others only append and
//! go on. A line is never removed, so a channel that empties and fills again keeps its order
//! (its vacate is carried out before the next occupy).
//!
//! Each step gets a ticket when it is put in line; whoever put it there and must not go on
//! before it is carried out (a joiner waiting for its member list, a REST trigger that answers
//! only once its event is in every subscriber's queue) waits on the ticket. Waiting costs
//! nothing when the pusher carried the line out itself, which is the common case.

use std::collections::VecDeque;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Lines per app: enough that busy channels rarely share one, few enough to cost nothing idle.
pub const LINES: usize = 64;

struct Line<T> {
    steps: VecDeque<T>,
    /// Someone is carrying out this line's steps.
    running: bool,
    /// Steps ever put in this line; the last one's ticket.
    pushed: u64,
    /// Steps carried out (or that panicked): tickets up to this one are done.
    carried: u64,
    /// Who waits for which ticket.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl<T> Line<T> {
    /// One more step is behind us: wake whoever waited for it.
    fn finish_step(&mut self) {
        self.carried += 1;
        if !self.waiters.is_empty() {
            let carried = self.carried;
            // Dropping a waiter's sender is what wakes it.
            self.waiters.retain(|(ticket, _)| *ticket > carried);
        }
    }
}

/// A step's place in its line, for [`ChannelSequence::wait_for`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    line: usize,
    number: u64,
}

impl Ticket {
    /// The line the step is in.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// The lines of one app.
pub struct ChannelSequence<T> {
    lines: Box<[Mutex<Line<T>>]>,
}

/// What [`ChannelSequence::run`] left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Ran {
    /// The line is empty, or another thread is carrying it out.
    Done,
    /// The step limit was reached with steps left; the caller must run the line again (on a
    /// task of its own, so one socket does not carry out everybody's work).
    More,
}

impl<T> Default for ChannelSequence<T> {
    fn default() -> Self {
        ChannelSequence {
            lines: (0..LINES)
                .map(|_| {
                    Mutex::new(Line {
                        steps: VecDeque::new(),
                        running: false,
                        pushed: 0,
                        carried: 0,
                        waiters: Vec::new(),
                    })
                })
                .collect(),
        }
    }
}

impl<T> ChannelSequence<T> {
    /// The line of `channel`.
    pub fn line_of(&self, channel: &str) -> usize {
        // A fixed hasher: a channel must map to the same line for the life of the process.
        BuildHasherDefault::<DefaultHasher>::default().hash_one(channel) as usize % LINES
    }

    fn lock(&self, line: usize) -> MutexGuard<'_, Line<T>> {
        // A step that panicked leaves the queue itself intact.
        self.lines[line].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a step at the end of a line; call while the channel's lock fixes its place.
    pub fn push(&self, line: usize, step: T) -> Ticket {
        let mut state = self.lock(line);
        state.steps.push_back(step);
        state.pushed += 1;
        Ticket {
            line,
            number: state.pushed,
        }
    }

    /// `None` when the ticket's step has been carried out; otherwise what resolves once it is.
    pub fn wait_for(&self, ticket: Ticket) -> Option<oneshot::Receiver<()>> {
        let mut state = self.lock(ticket.line);
        if state.carried >= ticket.number {
            return None;
        }
        let (done, wait) = oneshot::channel();
        state.waiters.push((ticket.number, done));
        Some(wait)
    }

    /// Carries out the line's steps in order with `carry_out`, at most `limit` of them, unless
    /// another thread is at it already. No lock is held while a step is carried out.
    pub fn run(&self, line: usize, limit: usize, mut carry_out: impl FnMut(T)) -> Ran {
        {
            let mut state = self.lock(line);
            if state.running || state.steps.is_empty() {
                return Ran::Done;
            }
            state.running = true;
        }
        // A step that panics must not leave the line marked running: nobody would run it again.
        let unwinding = Unwinding {
            sequence: self,
            line,
        };
        let mut done = 0;
        loop {
            let step = {
                let mut state = self.lock(line);
                if done > 0 {
                    state.finish_step();
                }
                if done == limit && !state.steps.is_empty() {
                    state.running = false;
                    std::mem::forget(unwinding);
                    return Ran::More;
                }
                match state.steps.pop_front() {
                    Some(step) => step,
                    None => {
                        state.running = false;
                        std::mem::forget(unwinding);
                        return Ran::Done;
                    }
                }
            };
            carry_out(step);
            done += 1;
        }
    }
}

/// Clears a line's running mark if carrying out one of its steps panics.
struct Unwinding<'a, T> {
    sequence: &'a ChannelSequence<T>,
    line: usize,
}

impl<T> Drop for Unwinding<'_, T> {
    fn drop(&mut self) {
        let mut state = self.sequence.lock(self.line);
        // The step that panicked is over too: nobody may wait for it forever.
        state.finish_step();
        state.running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn steps_run_in_order_and_a_busy_line_is_left_to_its_runner() {
        let sequence = ChannelSequence::default();
        let line = sequence.line_of("c");
        assert_eq!(line, sequence.line_of("c"));
        sequence.push(line, 1);
        sequence.push(line, 2);
        let mut seen = Vec::new();
        let ran = sequence.run(line, 100, |step| {
            if step == 1 {
                sequence.push(line, 3);
                // The line is being run: a second runner leaves it alone.
                assert_eq!(sequence.run(line, 100, |_| panic!("not mine")), Ran::Done);
            }
            seen.push(step);
        });
        assert_eq!(ran, Ran::Done);
        assert_eq!(seen, [1, 2, 3]);
    }

    #[test]
    fn a_panicking_step_leaves_the_line_runnable() {
        let sequence = ChannelSequence::default();
        sequence.push(0, 1);
        sequence.push(0, 2);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sequence.run(0, 10, |_| panic!("a bug in a step"))
        }));
        assert!(panicked.is_err());
        let mut seen = Vec::new();
        assert_eq!(sequence.run(0, 10, |s| seen.push(s)), Ran::Done);
        assert_eq!(seen, [2], "the rest of the line still runs");
    }

    #[test]
    fn the_limit_hands_the_rest_back() {
        let sequence = ChannelSequence::default();
        for step in 0..5 {
            sequence.push(0, step);
        }
        let mut seen = Vec::new();
        assert_eq!(sequence.run(0, 3, |s| seen.push(s)), Ran::More);
        assert_eq!(sequence.run(0, 3, |s| seen.push(s)), Ran::Done);
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn concurrent_pushers_lose_nothing() {
        let sequence = Arc::new(ChannelSequence::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (sequence, seen) = (sequence.clone(), seen.clone());
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        sequence.push(7, (t, i));
                        sequence.run(7, usize::MAX, |s| seen.lock().unwrap().push(s));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        sequence.run(7, usize::MAX, |s| seen.lock().unwrap().push(s));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4000);
        for t in 0..4 {
            let mine: Vec<_> = seen
                .iter()
                .filter(|(s, _)| *s == t)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>(), "thread {t} in order");
        }
    }

    #[test]
    fn a_ticket_is_done_once_its_step_is_carried_out_even_by_a_panic() {
        let sequence = ChannelSequence::default();
        let first = sequence.push(3, 1);
        let second = sequence.push(3, 2);
        let mut first_wait = sequence.wait_for(first).expect("not carried out yet");
        let mut second_wait = sequence.wait_for(second).expect("not carried out yet");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sequence.run(3, 10, |step| {
                if step == 2 {
                    assert!(first_wait
                        .try_recv()
                        .is_err_and(|e| e == oneshot::error::TryRecvError::Closed));
                    panic!("a bug in a step");
                }
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(
            second_wait.try_recv(),
            Err(oneshot::error::TryRecvError::Closed),
            "the waiter of a step that panicked is released"
        );
        assert!(sequence.wait_for(first).is_none());
        assert!(sequence.wait_for(second).is_none());
        let third = sequence.push(3, 3);
        assert_eq!(sequence.run(3, 10, |_| {}), Ran::Done);
        assert!(
            sequence.wait_for(third).is_none(),
            "carried out by the caller itself"
        );
    }
}
