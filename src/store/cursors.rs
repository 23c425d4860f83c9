//! Forwarding cursors: how far each forwarding target has acknowledged
//! each session, in the `forward` tree, so a restart resumes where the
//! target last answered. A cursor only moves after an acknowledgement, so
//! what a crash loses is at most the export in flight (sent again).

use prost::Message;

use super::schema::ForwardCursor;
use super::{Store, StoreError, log};

const FORWARD_TREE: &str = "forward";

impl Store {
    fn forward_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(FORWARD_TREE)?)
    }

    /// Every cursor of `target`, by session id.
    pub fn forward_cursors(
        &self,
        target: &str,
    ) -> Result<std::collections::HashMap<String, ForwardCursor>, StoreError> {
        let prefix = cursor_prefix(target);
        let mut cursors = std::collections::HashMap::new();
        for item in self.forward_tree()?.scan_prefix(&prefix) {
            let (key, value) = item?;
            let session_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            cursors.insert(session_id, log::decode(&value, "forward cursor")?);
        }
        Ok(cursors)
    }

    /// Stores cursors of `target` in one batch: all or none.
    pub fn save_forward_cursors<'a>(
        &self,
        target: &str,
        cursors: impl IntoIterator<Item = (&'a str, &'a ForwardCursor)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (session_id, cursor) in cursors {
            let mut key = cursor_prefix(target);
            key.extend_from_slice(session_id.as_bytes());
            batch.insert(key, cursor.encode_to_vec());
        }
        self.write(|| Ok(self.forward_tree()?.apply_batch(batch)?))?;
        Ok(())
    }
}

impl Store {
    /// Removes the cursors of `target` for these sessions.
    pub fn remove_forward_cursors(
        &self,
        target: &str,
        session_ids: &[String],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for session_id in session_ids {
            let mut key = cursor_prefix(target);
            key.extend_from_slice(session_id.as_bytes());
            batch.remove(key);
        }
        self.write(|| Ok(self.forward_tree()?.apply_batch(batch)?))?;
        Ok(())
    }
}

fn cursor_prefix(target: &str) -> Vec<u8> {
    let mut prefix = target.as_bytes().to_vec();
    prefix.push(0);
    prefix
}
