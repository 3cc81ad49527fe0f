"""The resource catalogue (目录管理服务): departments, users, domains, directories, themes,
information resources with their lifecycle and review, share applications and subscriptions,
search, and export and import for the provincial catalogue. It compiles into the routing
table (`routes`)."""
