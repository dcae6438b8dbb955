"""Prometheus metrics: the families every process records into (`families`), where processes of
one deployment keep them (`directory`), the text a scrape gets (`exposition`), and the sampler of
stream lengths (`streams`)."""
