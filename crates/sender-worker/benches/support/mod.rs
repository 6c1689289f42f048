//! The step both benches send: `send` stores it, `compose` composes it directly.

pub const SUBJECT: &str = "Quick question about {{company|your team}}, {{first_name|there}}";
/// About 1 KB of text: two links, a variable and a spintax group.
pub const BODY: &str = "Hi {{first_name|there}},\n\n\
I'm reaching out because teams like yours usually spend a surprising amount of time on \
follow-ups that never get answered. We built a small tool that sends the second and third \
email for you, stops the moment someone replies, and keeps every conversation in your own \
mailbox, so nothing looks automated to the people you write to.\n\n\
{Would it be worth|Would it make sense to have|Is it worth} a 15-minute call next week to \
see whether it fits how you work today? If it helps, here is a two-minute overview of how \
it works: https://www.acme-outreach.example/product/overview?utm_source=email\n\n\
A few customers in your space wrote up what changed for them after the first month, \
including the reply rates before and after and what they stopped doing by hand. The short \
version is that the follow-ups went out on time, replies landed where they always had, and \
nobody had to maintain a spreadsheet of who to chase on which day.\n\n\
Their stories are here: https://www.acme-outreach.example/customers/stories\n\n\
If this isn't a priority right now, no problem at all, just let me know and I won't follow \
up again.\n\n\
Best regards,\nAna\nAcme Outreach";
