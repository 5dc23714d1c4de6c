"""Offline demo news site (fictional Mexican outlets with RSS/Atom feeds) for tests and demos."""
