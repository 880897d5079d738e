package gateway

// AdminAddr is the admin listener's address; empty before Start or when
// GATEWAY_ADMIN_ADDR is empty. Only the tests need it: the gateway logs the
// address it bound.
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.ln.Addr().String()
}
