"""The index layers, one per module. The contract they all keep is in
`proxy.edge.index`; the one ordered list that stacks them is `proxy.edge.services.STACK`.

From the bottom: upstream -> page_cache -> origins -> priority -> hash_fill -> policy
-> host_filter -> rewrite -> variants -> turn.
"""
