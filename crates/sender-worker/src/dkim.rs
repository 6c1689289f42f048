//! TEMPORARY STUB (replaced by the dkim branch).
#[derive(Debug, Default)]
pub struct DkimSigners;
impl DkimSigners {
    pub fn from_config(_: &[domain::config::DkimKeyConfig]) -> anyhow::Result<Self> {
        Ok(Self)
    }
    pub fn sign(&self, _: &mut lettre::Message, _: &str) -> bool {
        false
    }
}
