"""`make bench`: load-test the shop with wrk and compare each page with a bare Django view."""
