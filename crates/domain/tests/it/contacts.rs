//! The set-based contact upsert at the query level.

use diesel_async::AsyncConnection as _;
use domain::db::contacts::{self, ContactUpsert};
use domain::testing::TestDatabase;
use serde_json::json;

use crate::suppressions::workspace;

fn row(email: &str, first_name: Option<&str>, attributes: serde_json::Value) -> ContactUpsert {
    ContactUpsert {
        email: email.to_owned(),
        first_name: first_name.map(str::to_owned),
        last_name: None,
        company: None,
        title: None,
        timezone: None,
        attributes,
    }
}

#[tokio::test]
async fn upsert_inserts_merges_and_keeps_the_first_write_of_a_transaction() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let ws = workspace(&mut conn, "acme").await?;

    let first = contacts::upsert_many(
        &mut conn,
        ws,
        &[
            row("a@example.com", Some("A"), json!({"x": "1", "y": "1"})),
            row("b@example.com", None, json!({})),
        ],
    )
    .await?;
    assert!(first.iter().all(|o| o.inserted), "{first:?}");

    // Separate statements of one transaction: the second write of a@ is left out.
    let outcomes = conn
        .transaction(async |tx| -> anyhow::Result<_> {
            let one = contacts::upsert_many(
                tx,
                ws,
                &[
                    row("a@example.com", None, json!({"y": "2", "z": "2"})),
                    row("c@example.com", Some("C"), json!({})),
                ],
            )
            .await?;
            let two = contacts::upsert_many(
                tx,
                ws,
                &[row("a@example.com", Some("late"), json!({"late": "1"}))],
            )
            .await?;
            Ok((one, two))
        })
        .await?;
    let mut one: Vec<(String, bool)> = outcomes
        .0
        .into_iter()
        .map(|o| (o.email, o.inserted))
        .collect();
    one.sort();
    assert_eq!(
        one,
        [
            ("a@example.com".to_owned(), false),
            ("c@example.com".to_owned(), true)
        ]
    );
    assert!(outcomes.1.is_empty(), "already written in this transaction");

    let listed = contacts::list(&mut conn, ws, Default::default(), None, 10).await?;
    let a = listed.iter().find(|c| c.email == "a@example.com");
    assert_eq!(
        a.and_then(|c| c.first_name.as_deref()),
        Some("A"),
        "null keeps"
    );
    assert_eq!(
        a.map(|c| c.attributes.clone()),
        Some(json!({"x": "1", "y": "2", "z": "2"})),
        "merged"
    );
    assert_eq!(listed.len(), 3);

    let (contact, inserted) =
        contacts::upsert_one(&mut conn, ws, &row("b@example.com", Some("B"), json!({})))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert!(!inserted);
    assert_eq!(contact.first_name.as_deref(), Some("B"));
    Ok(())
}
