//! The one worker pool: independent pieces of work (clients to scan,
//! segments to read, target servers to ask) spread over threads, outputs
//! handed back on the calling thread as they finish.
//!
//! A piece of work that panics is a bug, never data: the panic is caught
//! where it happened, the other pieces still run and deliver, and the run
//! ends in `Err(WorkerPanic)` naming the piece, so nothing a worker had
//! already done is dropped in silence.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use thiserror::Error;

/// A piece of work panicked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a worker failed unexpectedly on item {index}: {message}")]
pub struct WorkerPanic {
    /// Which item (its index in the slice) was being worked on.
    pub index: usize,
    pub message: String,
}

/// Threads for CPU-bound work: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `work` on every item on up to `threads` threads and calls `each`
/// with each item's index and output, in the order they finish, on the
/// calling thread (so `each` may borrow mutably). Returns the first panic
/// once every other item is done.
pub fn run<T, R>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
    mut each: impl FnMut(usize, R),
) -> Result<(), WorkerPanic>
where
    T: Sync,
    R: Send,
{
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<(usize, Result<R, String>)>();
    let mut first_panic: Option<WorkerPanic> = None;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let sender = sender.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let output =
                        catch_unwind(AssertUnwindSafe(|| work(item))).map_err(panic_message);
                    if sender.send((index, output)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (index, output) in receiver {
            match output {
                Ok(output) => each(index, output),
                Err(message) => {
                    first_panic.get_or_insert(WorkerPanic { index, message });
                }
            }
        }
    });
    first_panic.map_or(Ok(()), Err)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_comes_back_once() {
        let items: Vec<u64> = (0..1000).collect();
        let mut seen = vec![0u32; items.len()];
        let mut sum = 0;
        run(
            &items,
            4,
            |n| n * 2,
            |index, doubled| {
                seen[index] += 1;
                sum += doubled;
            },
        )
        .unwrap();
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(sum, 999 * 1000);
    }

    #[test]
    fn a_panic_is_reported_and_the_other_outputs_still_arrive() {
        let items: Vec<u32> = (0..50).collect();
        let mut delivered = Vec::new();
        let result = run(
            &items,
            3,
            |&n| {
                if n == 17 {
                    panic!("item seventeen is cursed");
                }
                n
            },
            |_, n| delivered.push(n),
        );
        let panic = result.unwrap_err();
        assert_eq!(panic.index, 17);
        assert!(panic.message.contains("cursed"), "{panic}");
        delivered.sort_unstable();
        let expected: Vec<u32> = (0..50).filter(|&n| n != 17).collect();
        assert_eq!(delivered, expected);
    }
}
