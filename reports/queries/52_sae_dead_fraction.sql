-- section: Sparse autoencoders
-- title: Dead and dense latents per SAE
-- chart: bar x=sae_id y=fraction series=kind
-- note: Fractions of each dictionary that never fired (dead) or fired on more than 10% of held-out tokens (dense).
select sae_id, 'dead' as kind, dead_frac as fraction from sae_runs
union all
select sae_id, 'dense' as kind, dense_frac as fraction from sae_runs
order by sae_id, kind
