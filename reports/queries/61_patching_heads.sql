-- section: Causal interventions
-- title: Every attention head: patched at the final position, and mean-ablated
-- chart: heatmap x=head y=layer value=effect facet=panel
-- note: final position: the corrupted run with one head's clean output (attn_z) at the last token (denoising). mean ablation: the clean run with one head's output replaced by its mean over the prompts and positions; a head that matters pulls the effect down from 1.
select model || ' ' || task || ' ' || case when mode = 'mean_ablation' then 'mean ablation' else 'final position' end as panel,
       layer, head, round(effect, 4) as effect
from patching
where method = 'activation' and hook = 'attn_z' and direction is null
  and ((mode = 'denoising' and pos is not null) or mode = 'mean_ablation')
order by panel, layer, head
