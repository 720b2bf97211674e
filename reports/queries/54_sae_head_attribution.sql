-- section: Sparse autoencoders
-- title: Attention SAEs: latents by their strongest head
-- chart: bar x=head y=latents series=panel
-- note: For each SAE on attn_z, each latent's decoder norm per head as a share of its total (sae_heads); a latent counts for the head with the largest share, in the panel 'dominated' when that share is at least one half and 'mixed' otherwise.
with best as (
    select sae_id, feature, arg_max(head, norm_frac) as head, max(norm_frac) as share
    from sae_heads group by sae_id, feature
)
select sae_id || case when share >= 0.5 then ' dominated' else ' mixed' end as panel, head, count(*) as latents
from best
group by all
order by panel, head
