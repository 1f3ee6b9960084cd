//! Friends written in bulk, in the formats the functions write them (users rows and tag items),
//! for benchmarks that need many: `BatchWriteItem`, 25 items a request, 8 requests at once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::stream::{self, StreamExt};
use shared::adapters::dynamodb::tags::tag_attributes;
use shared::segment::FriendFacts;
use shared::tagging::{friend_index_key, shard_of, TagItem};

use crate::TestStack;

/// Friend `i`'s user ID: stable, spread over the shards.
pub fn user_id(i: u64) -> String {
    format!("U{:032x}", i.wrapping_mul(0x2545_F491_4F6C_DD1D))
}

/// Writes each friend's users row and tag items. Returns the number of items written.
pub async fn bulk_friends(stack: &TestStack, friends: impl Iterator<Item = (String, FriendFacts)>) -> usize {
    let (tags_table, users_table) = (stack.table("TagsTable").to_string(), stack.table("UsersTable").to_string());
    let mut requests: Vec<(String, HashMap<String, AttributeValue>)> = vec![];
    for (user, f) in friends {
        let followed = f.followed_at_ms.unwrap_or(0);
        let mut row = HashMap::from([
            ("userId".to_string(), AttributeValue::S(user.clone())),
            ("state".to_string(), AttributeValue::S(if f.blocked { "blocked" } else { "following" }.into())),
            ("firstFollowedAt".to_string(), AttributeValue::N(followed.to_string())),
        ]);
        if !f.blocked {
            row.insert("fshard".into(), AttributeValue::S(friend_index_key(shard_of(&user))));
        }
        requests.push((users_table.clone(), row));
        for (tag, t) in &f.tags {
            let item = TagItem {
                tag: tag.clone(),
                active: true,
                tagged_at_ms: t.tagged_at_ms,
                expires_at_ms: t.expires_at_ms,
                source: "bench".into(),
                changed_at_ms: t.tagged_at_ms,
                indexed: !f.blocked,
                followed_at_ms: f.followed_at_ms,
                version: 0,
            };
            requests.push((tags_table.clone(), tag_attributes(&user, &item)));
        }
    }
    let items = requests.len();
    let batches: Vec<Vec<(String, HashMap<String, AttributeValue>)>> =
        requests.chunks(25).map(|c| c.to_vec()).collect();
    stream::iter(batches)
        .for_each_concurrent(8, |batch| async move {
            let mut by_table: HashMap<String, Vec<WriteRequest>> = HashMap::new();
            for (table, item) in batch {
                let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
                by_table.entry(table).or_default().push(WriteRequest::builder().put_request(put).build());
            }
            let mut pending = Some(by_table);
            while let Some(p) = pending.take().filter(|p| !p.is_empty()) {
                let out = stack.dynamodb.batch_write_item().set_request_items(Some(p)).send().await.unwrap();
                pending = out.unprocessed_items;
            }
        })
        .await;
    items
}
