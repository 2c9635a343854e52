use vorte_cache::on_event;

#[on_event(user_updated)]
async fn invalidate_user(user_id: i64) {
    let _ = user_id;
}

fn main() {}
