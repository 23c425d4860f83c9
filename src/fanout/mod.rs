//! Fan-out to followers. Each session with followers has one `watch` of its
//! `Progress` (latest committed seq, ended, deleted) and one live window of
//! its last few batches in memory (at most 128 batches and 32 KiB of
//! entries, see `window`). A follower at the live edge takes the next
//! batch from the window, shared with every other follower (and, sent
//! whole, encoded once for all of them); a follower behind it reads the
//! store from its own cursor, and goes back to the window once it has
//! caught up. Then it waits for the signal. Writers never wait for
//! followers, a slow follower costs no buffer of its own (it is served
//! from the store), and a session without followers has no channel, no
//! window and no task.

mod follower;
mod progress;
mod window;

#[cfg(test)]
pub(crate) use follower::LIVE_LINGER;
pub(crate) use follower::{
    FollowBatch, FollowError, FollowEvent, FollowOptions, Follower, FollowerGauge,
};
pub(crate) use progress::{Progress, ProgressSignal};
