package otpd

// CachedAPIKeys returns how many lookups k holds in its cache, for the tests.
func (k *APIKeys) CachedAPIKeys() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.cache)
}
