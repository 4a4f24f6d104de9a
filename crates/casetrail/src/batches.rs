//! One way to cut a stream into batches, for everything the command line appends or sends in batches (import, the
//! demo, the benchmarks).

/// The items of `items` in order, in batches of `size` (the last may be shorter; none is empty). Nothing is read
/// ahead of the batch being filled, so a batch is handed on as soon as it is full or the items end.
pub fn batches<I: IntoIterator>(items: I, size: usize) -> impl Iterator<Item = Vec<I::Item>> {
    assert!(size > 0, "a batch holds at least one item");
    let mut items = items.into_iter();
    std::iter::from_fn(move || {
        let batch: Vec<I::Item> = items.by_ref().take(size).collect();
        (!batch.is_empty()).then_some(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::batches;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn batches_keep_every_item_in_order_and_only_the_last_is_short(
            items in proptest::collection::vec(any::<u16>(), 0..300),
            size in 1usize..40,
        ) {
            let cut: Vec<Vec<u16>> = batches(items.clone(), size).collect();
            prop_assert_eq!(cut.concat(), items.clone());
            prop_assert_eq!(cut.len(), items.len().div_ceil(size));
            for (i, b) in cut.iter().enumerate() {
                prop_assert!(!b.is_empty() && b.len() <= size);
                if i + 1 < cut.len() {
                    prop_assert_eq!(b.len(), size);
                }
            }
        }
    }
}
