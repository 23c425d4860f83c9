//! Fan-out to followers. Each session with followers has one `watch` of its
//! `Progress` (latest committed seq, ended, deleted); each follower reads the
//! store from its own cursor until it reaches that seq, then waits for the
//! signal. Writers never wait for followers, a slow follower costs no
//! buffer (it is served from the store), and a session without followers
//! has no channel and no task.

mod follower;
mod progress;

pub(crate) use follower::{FollowError, FollowEvent, FollowOptions, Follower, FollowerGauge};
pub(crate) use progress::{Progress, ProgressSignal};
