//! Blocking single-producer single-consumer rings between pipeline stages.
//!
//! Input: values one stage thread sends ([`Sender::send`]). Output: the same values, in the same
//! order, to the next stage thread ([`Receiver::recv`]). Used for feed -> shard and shard -> sink
//! hops of [`crate::pipeline`].
//!
//! A ring is an `rtrb` SPSC ring buffer of fixed capacity wrapped with waiting: a full ring makes
//! the sender wait (backpressure, nothing is dropped), an empty ring makes the receiver wait.
//! Waiting first spins with [`crossbeam_utils::Backoff`], then, by [`Wait`], keeps spinning (a
//! stage that owns its core) or sleeps in short steps (a stage that shares a core, so it does not
//! take time from the stage doing the work). Dropping the [`Sender`] ends the stream: the
//! receiver gets every value sent before, then `None`. Dropping the [`Receiver`] makes every
//! later `send` fail with [`Disconnected`], so a producer never waits forever on a consumer that
//! stopped (a failed sink, a panicked shard).
//!
//! # Concurrency tests under loom
//!
//! With `--cfg loom` the ring buffer underneath is a small loom-instrumented SPSC queue with the
//! same interface as `rtrb`'s (`RingBuffer::new`, `push`, `pop`, `is_abandoned`): `rtrb`'s own
//! atomics are not loom-instrumented, so loom cannot explore them. The model keeps `rtrb`'s
//! protocol (a head and a tail index, each written by one side with release and read by the
//! other with acquire; an abandoned flag set on drop) and the waiting goes through
//! `loom::thread::yield_now`. The tests in this module then check, over every interleaving loom
//! explores, the wrapper's blocking send and receive, end of stream, disconnection and that no
//! value is lost, duplicated or reordered. Run them with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --lib pipeline::ring
//! ```
//!
//! (a separate `CARGO_TARGET_DIR` keeps the normal build's cache warm).

use std::fmt;

#[cfg(not(loom))]
use rtrb::{Consumer, PopError, Producer, PushError, RingBuffer};

#[cfg(loom)]
use self::model::{Consumer, PopError, Producer, PushError, RingBuffer};

/// How a stage waits once its spin budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Keep spinning: the stage has a core of its own and the lowest latency matters.
    Spin,
    /// Sleep in short steps: the stage shares cores with busier stages.
    Sleep,
}

/// Sleep step of [`Wait::Sleep`] once spinning gave nothing.
const SLEEP_STEP: std::time::Duration = std::time::Duration::from_micros(50);

/// The waiting of one stage: exponential spinning, then [`Wait`].
#[derive(Debug)]
pub struct Idle {
    #[cfg(not(loom))]
    backoff: crossbeam_utils::Backoff,
    wait: Wait,
}

impl Idle {
    /// A fresh waiter.
    pub fn new(wait: Wait) -> Self {
        Self {
            #[cfg(not(loom))]
            backoff: crossbeam_utils::Backoff::new(),
            wait,
        }
    }

    /// Called after progress: the next wait starts spinning short again.
    #[inline]
    pub fn reset(&mut self) {
        #[cfg(not(loom))]
        self.backoff.reset();
    }

    /// Waits a little before the caller checks again.
    #[cfg(not(loom))]
    pub fn wait(&mut self) {
        if !self.backoff.is_completed() {
            self.backoff.snooze();
            return;
        }
        match self.wait {
            Wait::Spin => std::hint::spin_loop(),
            Wait::Sleep => std::thread::sleep(SLEEP_STEP),
        }
    }

    /// Waits a little before the caller checks again (loom: a scheduling point).
    #[cfg(loom)]
    pub fn wait(&mut self) {
        let _ = (self.wait, SLEEP_STEP);
        loom::thread::yield_now();
    }
}

/// The receiving side is gone; the value that could not be sent is handed back.
#[derive(PartialEq, Eq)]
pub struct Disconnected<T>(pub T);

impl<T> fmt::Debug for Disconnected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Disconnected(..)")
    }
}

impl<T> fmt::Display for Disconnected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiving stage is gone")
    }
}

impl<T> std::error::Error for Disconnected<T> {}

/// A ring of `capacity` values (at least 1); both sides wait as `wait` says.
pub fn ring<T>(capacity: usize, wait: Wait) -> (Sender<T>, Receiver<T>) {
    let (producer, consumer) = RingBuffer::new(capacity.max(1));
    (
        Sender {
            producer,
            idle: Idle::new(wait),
            full: 0,
        },
        Receiver {
            consumer,
            idle: Idle::new(wait),
        },
    )
}

/// The sending side of a ring. Dropping it ends the stream.
pub struct Sender<T> {
    producer: Producer<T>,
    idle: Idle,
    full: u64,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("full", &self.full)
            .finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the ring is full. Fails, handing the value back, once the
    /// receiver is gone (a value sent while the receiver leaves may be sent and never received).
    pub fn send(&mut self, value: T) -> Result<(), Disconnected<T>> {
        if self.producer.is_abandoned() {
            return Err(Disconnected(value));
        }
        let mut value = value;
        let mut counted = false;
        loop {
            match self.producer.push(value) {
                Ok(()) => {
                    self.idle.reset();
                    return Ok(());
                }
                Err(PushError::Full(v)) => {
                    // A dropped receiver never frees a slot: stop instead of waiting forever.
                    if self.producer.is_abandoned() {
                        return Err(Disconnected(v));
                    }
                    if !counted {
                        counted = true;
                        self.full += 1;
                    }
                    value = v;
                    self.idle.wait();
                }
            }
        }
    }

    /// Sends that found the ring full and had to wait (backpressure from the next stage).
    pub fn full_waits(&self) -> u64 {
        self.full
    }
}

/// The receiving side of a ring.
pub struct Receiver<T> {
    consumer: Consumer<T>,
    idle: Idle,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The next value, waiting while the ring is empty; `None` once the sender is gone and
    /// every value it sent has been received.
    pub fn recv(&mut self) -> Option<T> {
        loop {
            match self.consumer.pop() {
                Ok(v) => {
                    self.idle.reset();
                    return Some(v);
                }
                Err(PopError::Empty) => {
                    if self.consumer.is_abandoned() {
                        // The sender may have pushed its last values between the `pop` above
                        // and its drop: they are visible now, take them before ending.
                        return self.consumer.pop().ok();
                    }
                    self.idle.wait();
                }
            }
        }
    }
}

/// A loom-instrumented SPSC ring with the interface of `rtrb`'s (the part used above).
#[cfg(loom)]
mod model {
    use crossbeam_utils::CachePadded;
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::sync::{Arc, Mutex};

    /// `rtrb::PushError`.
    #[derive(Debug)]
    pub enum PushError<T> {
        Full(T),
    }

    /// `rtrb::PopError`.
    #[derive(Debug)]
    pub enum PopError {
        Empty,
    }

    struct Shared<T> {
        /// One slot per position modulo capacity. The index protocol alone keeps the two sides
        /// apart; the mutex only lets the model hold values without unsafe code.
        slots: Vec<Mutex<Option<T>>>,
        /// Next position to read (written by the consumer).
        head: CachePadded<AtomicUsize>,
        /// Next position to write (written by the producer).
        tail: CachePadded<AtomicUsize>,
        abandoned: AtomicBool,
    }

    /// `rtrb::RingBuffer`.
    pub struct RingBuffer;

    impl RingBuffer {
        pub fn new<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
            let shared = Arc::new(Shared {
                slots: (0..capacity).map(|_| Mutex::new(None)).collect(),
                head: CachePadded::new(AtomicUsize::new(0)),
                tail: CachePadded::new(AtomicUsize::new(0)),
                abandoned: AtomicBool::new(false),
            });
            (
                Producer {
                    shared: Arc::clone(&shared),
                    tail: 0,
                },
                Consumer { shared, head: 0 },
            )
        }
    }

    /// `rtrb::Producer`.
    pub struct Producer<T> {
        shared: Arc<Shared<T>>,
        tail: usize,
    }

    impl<T> Producer<T> {
        pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
            let cap = self.shared.slots.len();
            let head = self.shared.head.load(Ordering::Acquire);
            if self.tail - head == cap {
                return Err(PushError::Full(value));
            }
            // The slot was emptied by the consumer before it released `head` past it.
            let mut slot = self.shared.slots[self.tail % cap]
                .try_lock()
                .expect("loom model: the consumer never holds a slot the producer may write");
            assert!(slot.is_none(), "loom model: writing over an unread value");
            *slot = Some(value);
            drop(slot);
            self.tail += 1;
            self.shared.tail.store(self.tail, Ordering::Release);
            Ok(())
        }

        pub fn is_abandoned(&self) -> bool {
            self.shared.abandoned.load(Ordering::Acquire)
        }
    }

    impl<T> Drop for Producer<T> {
        fn drop(&mut self) {
            self.shared.abandoned.store(true, Ordering::Release);
        }
    }

    /// `rtrb::Consumer`.
    pub struct Consumer<T> {
        shared: Arc<Shared<T>>,
        head: usize,
    }

    impl<T> Consumer<T> {
        pub fn pop(&mut self) -> Result<T, PopError> {
            let cap = self.shared.slots.len();
            let tail = self.shared.tail.load(Ordering::Acquire);
            if self.head == tail {
                return Err(PopError::Empty);
            }
            // The producer filled the slot before it released `tail` past it.
            let value = self.shared.slots[self.head % cap]
                .try_lock()
                .expect("loom model: the producer never holds a slot the consumer may read")
                .take()
                .expect("loom model: a published slot holds a value");
            self.head += 1;
            self.shared.head.store(self.head, Ordering::Release);
            Ok(value)
        }

        pub fn is_abandoned(&self) -> bool {
            self.shared.abandoned.load(Ordering::Acquire)
        }
    }

    impl<T> Drop for Consumer<T> {
        fn drop(&mut self) {
            self.shared.abandoned.store(true, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn values_arrive_in_order_and_the_stream_ends_after_the_last() {
        let (mut tx, mut rx) = ring::<u32>(2, Wait::Sleep);
        let producer = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.send(i).expect("receiver alive");
            }
            tx.full_waits()
        });
        let got: Vec<u32> = std::iter::from_fn(|| rx.recv()).collect();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        producer.join().expect("producer thread");
    }

    #[test]
    fn send_fails_once_the_receiver_is_gone() {
        let (mut tx, rx) = ring::<u32>(4, Wait::Sleep);
        tx.send(1).expect("receiver alive");
        drop(rx);
        // Room in the ring, but nobody will ever read it.
        assert_eq!(tx.send(2), Err(Disconnected(2)));
        assert_eq!(tx.full_waits(), 0);
    }

    #[test]
    fn a_zero_capacity_ring_holds_one_value() {
        let (mut tx, mut rx) = ring::<&str>(0, Wait::Spin);
        tx.send("a").expect("receiver alive");
        drop(tx);
        assert_eq!(rx.recv(), Some("a"));
        assert_eq!(rx.recv(), None);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    use loom::thread;

    /// Every value sent through a ring of one slot arrives once, in order, then the end.
    #[test]
    fn no_value_is_lost_or_reordered_through_a_full_ring() {
        loom::model(|| {
            let (mut tx, mut rx) = ring::<u32>(1, Wait::Spin);
            let producer = thread::spawn(move || {
                for i in 0..3 {
                    tx.send(i).expect("receiver alive");
                }
            });
            let mut got = Vec::new();
            while let Some(v) = rx.recv() {
                got.push(v);
            }
            assert_eq!(got, vec![0, 1, 2]);
            producer.join().expect("producer");
        });
    }

    /// A value sent right before the sender is dropped is still received (the receiver checks
    /// the ring again after it sees the sender gone).
    #[test]
    fn the_end_of_stream_never_overtakes_the_last_value() {
        loom::model(|| {
            let (mut tx, mut rx) = ring::<u32>(2, Wait::Spin);
            let producer = thread::spawn(move || {
                tx.send(7).expect("receiver alive");
                tx.send(8).expect("receiver alive");
            });
            assert_eq!(rx.recv(), Some(7));
            assert_eq!(rx.recv(), Some(8));
            assert_eq!(rx.recv(), None);
            producer.join().expect("producer");
        });
    }

    /// A sender waiting on a full ring whose receiver leaves stops with its value instead of
    /// waiting forever, and every send after the receiver is gone fails.
    #[test]
    fn a_sender_stops_when_the_receiver_leaves() {
        loom::model(|| {
            let (mut tx, mut rx) = ring::<u32>(1, Wait::Spin);
            tx.send(1).expect("room for one");
            let consumer = thread::spawn(move || {
                let first = rx.recv();
                drop(rx);
                first
            });
            // Either it fit in the slot value 1 left, or the receiver was already gone.
            let second = tx.send(2);
            assert!(
                matches!(second, Ok(()) | Err(Disconnected(2))),
                "{second:?}"
            );
            assert_eq!(consumer.join().expect("consumer"), Some(1));
            assert_eq!(tx.send(3), Err(Disconnected(3)));
        });
    }

    /// Two hops (feed -> relay -> sink): values and the end of the stream pass through a relay
    /// stage (as through a shard) in order, whichever of relay and sink waits on the other.
    ///
    /// The feed fills its ring and leaves before the relay starts: loom explores spin-waits as
    /// scheduling points, and two stages waiting at once on a third would let it alternate
    /// between the waiting two without end.
    #[test]
    fn values_and_the_end_pass_through_a_relay_stage() {
        loom::model(|| {
            let (mut feed, mut relay_in) = ring::<u32>(3, Wait::Spin);
            let (mut relay_out, mut sink) = ring::<u32>(1, Wait::Spin);
            for i in 0..3 {
                feed.send(i).expect("relay ring alive");
            }
            drop(feed);
            let relay = thread::spawn(move || {
                while let Some(v) = relay_in.recv() {
                    relay_out.send(v * 10).expect("sink alive");
                }
            });
            let mut got = Vec::new();
            while let Some(v) = sink.recv() {
                got.push(v);
            }
            assert_eq!(got, vec![0, 10, 20]);
            relay.join().expect("relay");
        });
    }
}
