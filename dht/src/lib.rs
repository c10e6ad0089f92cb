//! Mainline DHT (BEP 5): a sans-IO node and a tokio driver.
