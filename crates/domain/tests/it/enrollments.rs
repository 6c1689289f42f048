//! Enrolling at the query level: the composite key to the sequence in its workspace and the
//! `NOT EXISTS` insert under the sequence lock.

use chrono::Utc;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use domain::db::contacts::{self, ContactUpsert};
use domain::db::{enrollments, sequences};
use domain::testing::TestDatabase;
use uuid::Uuid;

use crate::suppressions::workspace;

async fn sequence(conn: &mut AsyncPgConnection, workspace_id: Uuid) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query("INSERT INTO sequences (id, workspace_id, name) VALUES ($1, $2, 's')")
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(workspace_id)
        .execute(conn)
        .await?;
    Ok(id)
}

async fn contact_ids(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    emails: &[&str],
) -> anyhow::Result<Vec<Uuid>> {
    let rows: Vec<ContactUpsert> = emails
        .iter()
        .map(|email| ContactUpsert {
            email: (*email).to_owned(),
            first_name: None,
            last_name: None,
            company: None,
            title: None,
            timezone: None,
            attributes: serde_json::json!({}),
        })
        .collect();
    let keys = contacts::upsert_many_keys(conn, workspace_id, &rows).await?;
    anyhow::ensure!(keys.len() == emails.len(), "{keys:?}");
    // The upsert returns what enrolling needs, in no particular order.
    let mut by_email: Vec<(String, Uuid)> = keys.into_iter().map(|k| (k.email, k.id)).collect();
    by_email.sort();
    let mut sorted: Vec<&str> = emails.to_vec();
    sorted.sort_unstable();
    anyhow::ensure!(
        by_email
            .iter()
            .map(|(e, _)| e.as_str())
            .eq(sorted.iter().copied()),
        "{by_email:?}"
    );
    Ok(emails
        .iter()
        .filter_map(|e| by_email.iter().find(|(x, _)| x == e).map(|(_, id)| *id))
        .collect())
}

async fn enrolled(conn: &mut AsyncPgConnection, sequence_id: Uuid) -> anyhow::Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count =
        diesel::sql_query("SELECT count(*) AS n FROM enrollments WHERE sequence_id = $1")
            .bind::<SqlUuid, _>(sequence_id)
            .get_result(conn)
            .await?;
    Ok(count.n)
}

#[tokio::test]
async fn insert_many_enrolls_each_contact_once_under_the_sequence_lock() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let ws = workspace(&mut conn, "acme").await?;
    let seq = sequence(&mut conn, ws).await?;
    let ids = contact_ids(
        &mut conn,
        ws,
        &["a@example.com", "b@example.com", "c@example.com"],
    )
    .await?;

    let enroll =
        async |conn: &mut AsyncPgConnection, some: Vec<Uuid>| -> anyhow::Result<Vec<Uuid>> {
            conn.transaction(async |tx| -> anyhow::Result<Vec<Uuid>> {
                sequences::lock(tx, ws, seq)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no sequence"))?;
                Ok(enrollments::insert_many(tx, ws, seq, &some, 1, Utc::now()).await?)
            })
            .await
        };
    let mut first = enroll(&mut conn, ids[..2].to_vec()).await?;
    first.sort();
    let mut expected = ids[..2].to_vec();
    expected.sort();
    assert_eq!(first, expected);
    // Those already in the sequence are left out, the new one enrolled.
    let second = enroll(&mut conn, ids.clone()).await?;
    assert_eq!(second, vec![ids[2]]);
    assert_eq!(enroll(&mut conn, ids.clone()).await?, Vec::<Uuid>::new());
    assert_eq!(enrolled(&mut conn, seq).await?, 3);
    Ok(())
}

#[tokio::test]
async fn an_enrollment_sequence_must_be_in_its_workspace() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let ws = workspace(&mut conn, "acme").await?;
    let other = workspace(&mut conn, "other").await?;
    let seq = sequence(&mut conn, ws).await?;
    let theirs = contact_ids(&mut conn, other, &["x@example.com"]).await?;

    // The sequence exists and the workspace exists, but not together.
    let error = enrollments::insert_many(&mut conn, other, seq, &theirs, 1, Utc::now())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("an enrollment crossed workspaces"))?;
    assert!(
        matches!(
            error,
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _
            )
        ),
        "{error:?}"
    );
    assert_eq!(enrolled(&mut conn, seq).await?, 0);

    // Deleting the workspace still takes its enrollments along (through its sequences).
    let mine = contact_ids(&mut conn, ws, &["y@example.com"]).await?;
    enrollments::insert_many(&mut conn, ws, seq, &mine, 1, Utc::now()).await?;
    assert_eq!(enrolled(&mut conn, seq).await?, 1);
    diesel::sql_query("DELETE FROM workspaces WHERE id = $1")
        .bind::<SqlUuid, _>(ws)
        .execute(&mut conn)
        .await?;
    assert_eq!(enrolled(&mut conn, seq).await?, 0);
    Ok(())
}
