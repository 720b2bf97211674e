-- section: Causal interventions
-- title: Subspace patching along one direction, and the illusion check
-- note: full: patching only the projection on the direction; row / null: its parts in the row space and the null space of the weights that read the site, each patched alone (Makelov et al.). illusion: the effect is at least patch.min_effect and the row-space part alone gives less than patch.illusion_fraction of it.
select model, task, direction, hook, layer, pos, head, coalesce(split, 'all') as prompts, part,
       round(effect, 3) as effect, illusion, round(null_norm, 3) as null_norm
from patching where method = 'subspace'
order by model, task, direction, prompts, part
