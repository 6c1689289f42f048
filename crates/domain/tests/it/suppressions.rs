//! The suppression checks enrollment and sending rely on, at the query level.

use diesel_async::AsyncPgConnection;
use domain::db::suppressions::{self, NewSuppression};
use domain::db::workspaces::{self, NewWorkspace};
use domain::testing::TestDatabase;
use uuid::Uuid;

pub async fn workspace(conn: &mut AsyncPgConnection, name: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    workspaces::insert(
        conn,
        &NewWorkspace {
            id,
            name,
            tracking_base_url: None,
        },
    )
    .await?;
    Ok(id)
}

async fn suppress(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    entry: &str,
) -> anyhow::Result<bool> {
    let (_, created) = suppressions::insert_or_get(
        conn,
        &NewSuppression {
            id: Uuid::now_v7(),
            workspace_id,
            email: entry,
            reason: "manual",
            source: None,
        },
    )
    .await?;
    Ok(created)
}

#[tokio::test]
async fn addresses_and_domains_suppress_within_their_workspace() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let acme = workspace(&mut conn, "acme").await?;
    let other = workspace(&mut conn, "other").await?;
    assert!(suppress(&mut conn, acme, "jane@example.com").await?);
    assert!(
        !suppress(&mut conn, acme, "jane@example.com").await?,
        "idempotent"
    );
    assert!(
        suppress(
            &mut conn,
            acme,
            &suppressions::domain_entry("Competitor.io")
        )
        .await?
    );

    for (email, expected) in [
        ("jane@example.com", true),
        (" JANE@Example.com ", true),
        ("john@example.com", false),
        ("anyone@competitor.io", true),
        ("Bob@COMPETITOR.IO", true),
        ("bob@eu.competitor.io", false),
        ("bob@competitor.io.evil", false),
    ] {
        assert_eq!(
            suppressions::is_suppressed(&mut conn, acme, email).await?,
            expected,
            "{email}"
        );
    }
    assert!(!suppressions::is_suppressed(&mut conn, other, "jane@example.com").await?);
    assert!(!suppressions::is_suppressed(&mut conn, other, "x@competitor.io").await?);

    let emails: Vec<String> = [
        "jane@example.com",
        "john@example.com",
        "x@competitor.io",
        "Y@Competitor.io",
        "z@eu.competitor.io",
    ]
    .map(str::to_owned)
    .to_vec();
    let suppressed = suppressions::suppressed_among(&mut conn, acme, &emails).await?;
    let mut suppressed: Vec<&str> = suppressed.iter().map(String::as_str).collect();
    suppressed.sort();
    assert_eq!(
        suppressed,
        ["Y@Competitor.io", "jane@example.com", "x@competitor.io"]
    );
    assert!(
        suppressions::suppressed_among(&mut conn, other, &emails)
            .await?
            .is_empty()
    );
    assert!(
        suppressions::suppressed_among(&mut conn, acme, &[])
            .await?
            .is_empty()
    );
    Ok(())
}
