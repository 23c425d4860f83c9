//! The byte budget of a response (`--max-response-size`): what every edge
//! does to a page of entries or sessions before sending it, so that no
//! response outgrows a client's receive limit and a client that stops
//! reading pins a bounded amount of memory. The first item always goes,
//! however large (a single entry is bounded by `--max-entry-size`); the
//! items left out are the next page's, which the caller points its cursor
//! or page token at.

/// Items in order while their weights add up to at most `max_bytes`, the
/// first always; and whether any was left out.
pub(crate) fn take_within<T>(
    items: impl IntoIterator<Item = T>,
    max_bytes: usize,
    mut weigh: impl FnMut(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut kept = Vec::new();
    let mut total = 0usize;
    for item in items {
        let weight = weigh(&item);
        if !kept.is_empty() && total.saturating_add(weight) > max_bytes {
            return (kept, true);
        }
        total = total.saturating_add(weight);
        kept.push(item);
    }
    (kept, false)
}

/// `items` in order, cut into groups whose weights add up to at most
/// `max_bytes` each (an item heavier than that alone in its group): the
/// messages a stream sends them in.
pub(crate) fn split_within<T>(
    items: impl IntoIterator<Item = T>,
    max_bytes: usize,
    mut weigh: impl FnMut(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut total = 0usize;
    for item in items {
        let weight = weigh(&item);
        match groups.last_mut() {
            Some(group) if total.saturating_add(weight) <= max_bytes => {
                total = total.saturating_add(weight);
                group.push(item);
            }
            _ => {
                total = weight;
                groups.push(vec![item]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_groups_within_the_budget() {
        assert_eq!(
            split_within([5, 5, 5, 20, 1], 10, |n| *n),
            vec![vec![5, 5], vec![5], vec![20], vec![1]]
        );
        assert!(split_within(Vec::<usize>::new(), 10, |n| *n).is_empty());
    }

    #[test]
    fn keeps_the_first_item_and_stops_before_the_budget() {
        assert_eq!(take_within([5, 5, 5], 10, |n| *n), (vec![5, 5], true));
        assert_eq!(take_within([50, 1], 10, |n| *n), (vec![50], true));
        assert_eq!(take_within([3, 3], 10, |n| *n), (vec![3, 3], false));
        assert_eq!(
            take_within(Vec::<usize>::new(), 10, |n| *n),
            (vec![], false)
        );
    }
}
