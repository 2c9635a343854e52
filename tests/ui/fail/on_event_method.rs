use vorte_cache::on_event;

struct Users;

impl Users {
    #[on_event("user.updated")]
    async fn invalidate(&self, user_id: i64) {
        let _ = user_id;
    }
}

fn main() {}
