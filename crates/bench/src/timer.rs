//! A sleep precise to microseconds for pacing open-loop sends.
//!
//! The runtime's own timer rounds every deadline up to a whole millisecond (its wheel ticks in
//! milliseconds and `epoll_wait` takes milliseconds), so a send paced by it leaves up to a
//! millisecond late, and an open-loop run, which measures from the scheduled time, would report
//! that lateness as server latency. A Linux timerfd is an hrtimer behind a file descriptor: the
//! runtime's poller wakes when it fires, on the same thread, with no extra thread to schedule.

use std::io;

use rustix::fd::OwnedFd;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    pub fn new() -> io::Result<PreciseTimer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // `AsyncFd::new` is deprecated because an arbitrary `AsRawFd` may change or close the
        // descriptor it reports while registered; an `OwnedFd` owned by the `AsyncFd` cannot,
        // and the safe constructor keeps `unsafe` out of the crate.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(PreciseTimer { fd })
    }

    /// Completes at `deadline` (at once if it has passed).
    pub async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let value = Timespec {
            tv_sec: wait.as_secs() as _,
            tv_nsec: wait.subsec_nanos() as _,
        };
        timerfd_settime(
            &self.fd,
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: zero,
                it_value: value,
            },
        )?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match guard.try_io(|fd| Ok(rustix::io::read(fd, &mut expirations)?)) {
                Ok(result) => return result.map(drop),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn sleeps_until_the_deadline_and_not_before() {
        let timer = PreciseTimer::new().unwrap();
        for micros in [0u64, 150, 1_300, 2_050] {
            let deadline = Instant::now() + Duration::from_micros(micros);
            timer.sleep_until(deadline).await.unwrap();
            assert!(Instant::now() >= deadline, "woke before {micros} µs");
        }
        // A deadline in the past completes at once, and the timer stays usable after it.
        timer.sleep_until(Instant::now()).await.unwrap();
        let deadline = Instant::now() + Duration::from_micros(500);
        timer.sleep_until(deadline).await.unwrap();
        assert!(Instant::now() >= deadline);
    }
}
